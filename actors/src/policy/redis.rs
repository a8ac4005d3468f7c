//! The `redis` Lua module (KumoMTA's, as the global `redis` and `require 'redis'`):
//! `redis.open{ node = 'redis://host:port/', connect_timeout, response_timeout, ... }` returns a
//! connection whose `conn:query(cmd, args...)` returns Lua values (integers, strings, arrays,
//! nil; a Redis error is a Lua error).
//!
//! Connections are pooled by URL and timeouts: one multiplexed connection carries every query
//! of every Lua state, so `pool_size` is accepted and needs no separate pool. In the policy
//! threads `query` blocks its own thread on the Redis runtime; in custom_lua connections (async
//! states) it awaits.

use std::time::Duration;

use mlua::{Lua, Table, UserData, UserDataMethods, Value, Variadic};

use super::kumo::runtime_error;
use super::time_delta::TimeDelta;
use crate::throttles::{RedisTarget, block_on, connection, on_runtime};

pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    let redis = lua.create_table()?;
    redis.set(
        "open",
        lua.create_function(|lua, params: Table| {
            let (target, _) = target_from_params(lua, "redis.open", &params, &[])?;
            let conn = connection(&target).map_err(|e| runtime_error(lua, format!("redis.open: {e}")))?;
            Ok(RedisConnection { conn })
        })?,
    )?;
    lua.globals().set("redis", redis.clone())?;
    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("redis", redis)
}

/// `redis.open`'s parameters (also `kumo.configure_redis_throttles`'s). Keys in `extra` are the
/// caller's own and returned for it to read; anything unknown is an error naming it.
pub(crate) fn target_from_params(
    lua: &Lua,
    what: &str,
    params: &Table,
    extra: &[&str],
) -> mlua::Result<(RedisTarget, Vec<(String, Value)>)> {
    let mut url = None;
    let mut connect_timeout = Duration::from_secs(30);
    let mut response_timeout = Duration::from_secs(30);
    let mut theirs = Vec::new();
    for pair in params.pairs::<String, Value>() {
        let (key, value) = pair?;
        match key.as_str() {
            "node" => {
                url = Some(match value {
                    Value::String(s) => s.to_str()?.to_string(),
                    Value::Table(t) if t.raw_len() == 1 => t.get::<String>(1)?,
                    _ => {
                        return Err(runtime_error(
                            lua,
                            format!("{what}: node: one redis:// URL (Redis Cluster is not supported yet)"),
                        ));
                    }
                })
            }
            "connect_timeout" => connect_timeout = TimeDelta::from_lua_arg(value)?.0,
            "response_timeout" => response_timeout = TimeDelta::from_lua_arg(value)?.0,
            "cluster" if value.as_boolean() == Some(true) => {
                return Err(runtime_error(
                    lua,
                    format!("{what}: cluster: Redis Cluster is not supported yet"),
                ));
            }
            // One multiplexed connection serves every query: pool knobs have nothing to tune;
            // username/password apply to clusters only (a single node takes them in its URL).
            "pool_size" | "wait_timeout" | "recycle_timeout" | "read_from_replicas" | "username"
            | "password" | "cluster" => {}
            other if extra.contains(&other) => theirs.push((key, value)),
            other => return Err(runtime_error(lua, format!("{what}: unknown key {other:?}"))),
        }
    }
    let Some(url) = url else {
        return Err(runtime_error(lua, format!("{what}: node is required (redis://host:port/)")));
    };
    if let Err(e) = redis::Client::open(url.as_str()) {
        return Err(runtime_error(lua, format!("{what}: node {url:?}: {e}")));
    }
    Ok((RedisTarget { url, connect_timeout, response_timeout }, theirs))
}

struct RedisConnection {
    conn: redis::aio::ConnectionManager,
}

impl UserData for RedisConnection {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("query", |lua, this, args: Variadic<Value>| {
            let mut conn = this.conn.clone();
            async move {
                let cmd = command(&lua, args)?;
                let query = async move { cmd.query_async::<redis::Value>(&mut conn).await };
                // A policy thread has no runtime and may block; an async state awaits.
                let result = match tokio::runtime::Handle::try_current() {
                    Err(_) => block_on(query),
                    Ok(_) => on_runtime(query).await,
                };
                match result {
                    Ok(value) => to_lua(&lua, value),
                    Err(e) => Err(runtime_error(&lua, format!("redis query: {e}"))),
                }
            }
        });
    }
}

fn command(lua: &Lua, args: Variadic<Value>) -> mlua::Result<redis::Cmd> {
    let mut args = args.into_iter();
    let name = match args.next() {
        Some(Value::String(s)) => s.to_str()?.to_string(),
        _ => return Err(runtime_error(lua, "conn:query: the first argument is the command name")),
    };
    let mut cmd = redis::cmd(&name);
    for (n, arg) in args.enumerate() {
        match arg {
            Value::String(s) => cmd.arg(s.as_bytes().to_vec()),
            Value::Integer(i) => cmd.arg(i),
            Value::Number(f) if f.fract() == 0.0 && f.abs() < 9e15 => cmd.arg(f as i64),
            Value::Number(f) => cmd.arg(f),
            Value::Boolean(b) => cmd.arg(i64::from(b)),
            other => {
                return Err(runtime_error(
                    lua,
                    format!(
                        "conn:query({name}): argument {} is a {}; pass strings or numbers",
                        n + 2,
                        other.type_name()
                    ),
                ));
            }
        };
    }
    Ok(cmd)
}

fn to_lua(lua: &Lua, value: redis::Value) -> mlua::Result<Value> {
    use redis::Value as R;
    Ok(match value {
        R::Nil => Value::Nil,
        R::Int(i) => Value::Integer(i),
        R::BulkString(b) => Value::String(lua.create_string(b)?),
        R::SimpleString(s) => Value::String(lua.create_string(s)?),
        R::Okay => Value::String(lua.create_string("OK")?),
        R::Double(d) => Value::Number(d),
        R::Boolean(b) => Value::Boolean(b),
        R::VerbatimString { text, .. } => Value::String(lua.create_string(text)?),
        R::Array(items) | R::Set(items) => {
            let t = lua.create_table()?;
            for item in items {
                t.raw_push(to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        R::Map(pairs) => {
            let t = lua.create_table()?;
            for (k, v) in pairs {
                t.raw_set(to_lua(lua, k)?, to_lua(lua, v)?)?;
            }
            Value::Table(t)
        }
        R::Attribute { data, .. } => to_lua(lua, *data)?,
        R::ServerError(e) => return Err(runtime_error(lua, format!("redis: {e:?}"))),
        other => Value::String(lua.create_string(format!("{other:?}"))?),
    })
}
