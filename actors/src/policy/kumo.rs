//! The `kumo` Lua module (SPEC §8): available as the global `kumo` and via `require 'kumo'`.

use mlua::{Function, Lua, Table, Value};

use super::convert::{json_to_lua, lua_to_json};
use super::error::rejection;
use super::time_delta::TimeDelta;

const HANDLERS: &str = "ferry.handlers";
const SITES: &str = "ferry.handler_sites";

/// Events that accept several handlers, run as a chain (SPEC §3.3). All others are Single.
pub const MULTIPLE_EVENTS: &[&str] = &[
    "get_queue_config",
    "requeue_message",
    "smtp_server_message_received",
    "smtp_server_mail_from",
    "smtp_server_rcpt_to",
    "smtp_server_ehlo",
    "get_egress_path_config",
    "spool_message_enumerated",
    "should_enqueue_log_record",
];

/// Set while the policy file runs; `kumo.on` is refused at any other time.
pub(crate) struct Loading;

pub fn install(lua: &Lua) -> mlua::Result<()> {
    lua.set_named_registry_value(HANDLERS, lua.create_table()?)?;
    lua.set_named_registry_value(SITES, lua.create_table()?)?;
    let kumo = lua.create_table()?;
    kumo.set("on", lua.create_function(on)?)?;
    kumo.set(
        "reject",
        lua.create_function(|_, (code, text): (u16, String)| -> mlua::Result<()> {
            Err(rejection(code, text))
        })?,
    )?;
    let encode = lua.create_function(|lua, v: Value| {
        serde_json::to_string(&lua_to_json(lua, v)?).map_err(mlua::Error::external)
    })?;
    let parse = lua.create_function(|lua, s: String| {
        let v: serde_json::Value = serde_json::from_str(&s).map_err(mlua::Error::external)?;
        json_to_lua(lua, &v)
    })?;
    kumo.set("json_encode", encode.clone())?;
    kumo.set("json_parse", parse.clone())?;
    let serde = lua.create_table()?;
    serde.set("json_encode", encode)?;
    serde.set("json_parse", parse)?;
    kumo.set("serde", serde)?;
    let time = lua.create_table()?;
    time.set("parse_duration", lua.create_function(|_, v: Value| TimeDelta::from_lua_arg(v))?)?;
    kumo.set("time", time)?;
    for (name, level) in [("log_error", 0), ("log_warn", 1), ("log_info", 2), ("log_debug", 3)] {
        kumo.set(
            name,
            lua.create_function(move |_, args: mlua::Variadic<Value>| {
                let text =
                    args.iter().map(|v| v.to_string().unwrap_or_default()).collect::<Vec<_>>().join(" ");
                match level {
                    0 => tracing::error!(target: "policy", "{text}"),
                    1 => tracing::warn!(target: "policy", "{text}"),
                    2 => tracing::info!(target: "policy", "{text}"),
                    _ => tracing::debug!(target: "policy", "{text}"),
                }
                Ok(())
            })?,
        )?;
    }
    // Accepted for compatibility with KumoMTA policies; Ferry has nothing to configure here.
    let noop = lua.create_function(|_, _: mlua::Variadic<Value>| Ok(()))?;
    kumo.set("configure_accounting_db_path", noop.clone())?;
    let aaa = lua.create_table()?;
    aaa.set("configure_acct_log", noop)?;
    kumo.set("aaa", aaa)?;

    super::queue_config::install(lua, &kumo)?;
    super::egress::install(lua, &kumo)?;
    super::listener_domain::install(lua, &kumo)?;
    super::xfer::install(lua, &kumo)?;
    super::bounce::install(lua, &kumo)?;
    super::log_hook::install(lua, &kumo)?;
    super::http::install(lua, &kumo)?;
    super::dkim::install(lua, &kumo)?;
    super::memoize::install(lua, &kumo)?;
    super::secrets::install(lua, &kumo)?;
    super::throttle::install(lua, &kumo)?;
    super::redis::install(lua)?;
    lua.globals().set("kumo", kumo.clone())?;
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("kumo", kumo)?;
    Ok(())
}

/// `kumo.<name>{...}`: the table validated into `T`; an error names the key and the Lua line.
pub(crate) fn maker<T: mlua::UserData + mlua::MaybeSend + 'static>(
    lua: &Lua,
    kumo_table: &mlua::Table,
    name: &'static str,
    build: fn(&serde_json::Value) -> Result<T, String>,
) -> mlua::Result<()> {
    kumo_table.set(
        name,
        lua.create_function(move |lua, params: Value| {
            let json = lua_to_json(lua, params)?;
            build(&json).map_err(|e| runtime_error(lua, format!("{name}: {e}")))
        })?,
    )
}

/// A runtime error naming the Lua line that called the Rust function raising it.
pub(crate) fn runtime_error(lua: &Lua, message: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("{}: {message}", caller_site(lua)))
}

/// `file:line` of the Lua code calling the current Rust function.
fn caller_site(lua: &Lua) -> String {
    lua.inspect_stack(1, |d| {
        let src = d.source().short_src.map(|s| s.to_string()).unwrap_or_default();
        format!("{src}:{}", d.current_line().unwrap_or(0))
    })
    .unwrap_or_else(|| "?".into())
}

fn on(lua: &Lua, (event, handler): (String, Function)) -> mlua::Result<()> {
    let site = caller_site(lua);
    if lua.app_data_ref::<Loading>().is_none() {
        return Err(mlua::Error::runtime(format!(
            "{site}: kumo.on('{event}') is only allowed while the policy loads, not inside a handler"
        )));
    }
    let handlers: Table = lua.named_registry_value(HANDLERS)?;
    let sites: Table = lua.named_registry_value(SITES)?;
    let list: Table = match handlers.get::<Option<Table>>(event.as_str())? {
        Some(t) => t,
        None => {
            let t = lua.create_table()?;
            handlers.set(event.as_str(), t.clone())?;
            t
        }
    };
    if list.raw_len() > 0 && !MULTIPLE_EVENTS.contains(&event.as_str()) {
        let first: String = sites.get(event.as_str())?;
        return Err(mlua::Error::runtime(format!(
            "{site}: event '{event}' allows only one handler; it was already registered at {first}"
        )));
    }
    if list.raw_len() == 0 {
        sites.set(event.as_str(), site)?;
    }
    list.push(handler)
}

/// Handlers registered for `event`, in registration order.
pub fn handlers(lua: &Lua, event: &str) -> mlua::Result<Vec<Function>> {
    let handlers: Table = lua.named_registry_value(HANDLERS)?;
    match handlers.get::<Option<Table>>(event)? {
        Some(list) => list.sequence_values::<Function>().collect(),
        None => Ok(Vec::new()),
    }
}

pub fn registered_events(lua: &Lua) -> mlua::Result<Vec<String>> {
    let handlers: Table = lua.named_registry_value(HANDLERS)?;
    handlers.pairs::<String, Value>().map(|kv| kv.map(|(k, _)| k)).collect()
}
