//! `kumo.secrets.load(SOURCE)` and the KeySource argument shape shared with `kumo.dkim.*`.

use std::path::PathBuf;

use mlua::{Lua, Table, Value};

use super::kumo::runtime_error;
use crate::secrets::KeySource;

/// A KeySource from policy: a file path string, `{ key_data = '...' }` or `{ file = '...' }`.
pub fn key_source(v: Value) -> mlua::Result<KeySource> {
    match v {
        Value::String(s) => Ok(KeySource::File(PathBuf::from(s.to_str()?.to_string()))),
        Value::Table(t) => {
            if let Some(data) = t.get::<Option<mlua::LuaString>>("key_data")? {
                Ok(KeySource::Data(data.as_bytes().to_vec()))
            } else if let Some(file) = t.get::<Option<String>>("file")? {
                Ok(KeySource::File(PathBuf::from(file)))
            } else {
                Err(mlua::Error::runtime(
                    "a key source is a file path or a table with key_data (or file); \
                     vault and event sources are not supported",
                ))
            }
        }
        other => Err(mlua::Error::runtime(format!(
            "a key source is a file path or a table with key_data, got {}",
            other.type_name()
        ))),
    }
}

pub fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let secrets = lua.create_table()?;
    secrets.set(
        "load",
        lua.create_function(|lua, source: Value| {
            let source = key_source(source).map_err(|e| runtime_error(lua, e))?;
            let bytes = source.load().map_err(|e| runtime_error(lua, e))?;
            lua.create_string(bytes)
        })?,
    )?;
    kumo.set("secrets", secrets)
}
