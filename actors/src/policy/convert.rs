//! JSON <-> Lua conversions. JSON null becomes nil (mlua's own NULL is a truthy light userdata,
//! which would make `if msg:get_meta('x') then` lie).

use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaSerdeExt, Value};

pub fn json_to_lua(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    if v.is_null() {
        return Ok(Value::Nil);
    }
    lua.to_value_with(v, SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false))
}

pub fn lua_to_json(lua: &Lua, v: Value) -> mlua::Result<serde_json::Value> {
    match v {
        Value::Nil => Ok(serde_json::Value::Null),
        Value::LightUserData(ud) if ud.0.is_null() => Ok(serde_json::Value::Null),
        other => lua.from_value(other),
    }
}
