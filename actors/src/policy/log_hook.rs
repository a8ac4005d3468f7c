//! `kumo.configure_log_hook{ name, meta, headers, per_record, ... }` (meant for the `init`
//! event): adds a log hook; see `log_hooks` for what happens to the records it takes.

use std::collections::HashMap;

use mlua::{Lua, LuaSerdeExt, Table, Value};
use serde::Deserialize;

use super::kumo::runtime_error;
use crate::log_hooks::{self, HookSpec};
use crate::logging::selection::Selection;
use crate::model::log_hook::{PerRecord, RecordFilter};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    #[serde(default)]
    meta: Vec<String>,
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    per_record: HashMap<String, PerRecord>,
    /// KumoMTA's: accepted. Hook messages are always spooled before the outcome they report
    /// becomes durable; there is no deferred mode.
    #[serde(default)]
    #[allow(dead_code)]
    deferred_spool: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    back_pressure: Option<u64>,
}

pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    kumo.set(
        "configure_log_hook",
        lua.create_function(|lua, params: Value| {
            let fail = |e: String| runtime_error(lua, format!("configure_log_hook: {e}"));
            // `{}` for a list is an empty table to Lua; treat it as the empty list.
            let params: Params = lua.from_value(params).map_err(|e| fail(e.to_string()))?;
            if params.name.is_empty() {
                return Err(fail("name must not be empty".into()));
            }
            let filter = RecordFilter::new(params.per_record).map_err(fail)?;
            log_hooks::configure(HookSpec {
                name: params.name,
                selection: Selection::new(&params.meta, &params.headers),
                filter,
            });
            Ok(())
        })?,
    )
}
