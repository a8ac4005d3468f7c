//! The Message object handlers see (SPEC §8 "Message methods"). It owns the message while Lua
//! runs; the caller takes it back afterwards with `AnyUserData::take`.

use bytes::Bytes;
use chrono::Utc;
use mlua::{Lua, MetaMethod, UserData, UserDataFields, UserDataMethods, Value};

use super::convert::{json_to_lua, lua_to_json};
use super::kumo::runtime_error;
use crate::model::scheduling::Scheduling;
use crate::model::{Message, headers};

pub struct LuaMessage(pub Message);

/// An envelope address as Lua sees it: `.user`, `.domain`, `.email`, and `tostring`.
#[derive(Clone)]
pub struct LuaAddress(pub String);

impl UserData for LuaAddress {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("user", |_, a| {
            Ok(a.0.rsplit_once('@').map_or(a.0.clone(), |(u, _)| u.to_string()))
        });
        fields.add_field_method_get("domain", |_, a| Ok(a.0.rsplit_once('@').map(|(_, d)| d.to_string())));
        fields.add_field_method_get("email", |_, a| Ok(a.0.clone()));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, a, ()| Ok(a.0.clone()));
        methods.add_meta_method(MetaMethod::Eq, |_, a, b: mlua::UserDataRef<LuaAddress>| Ok(a.0 == b.0));
    }
}

/// Accept an address given as a string or an address object.
fn address_arg(v: Value) -> mlua::Result<String> {
    match v {
        Value::String(s) => Ok(s.to_str()?.to_string()),
        Value::UserData(ud) => Ok(ud.borrow::<LuaAddress>()?.0.clone()),
        other => Err(mlua::Error::runtime(format!("expected an address, got {}", other.type_name()))),
    }
}

fn set_scheduling(lua: &Lua, msg: &mut Message, v: Value) -> mlua::Result<Value> {
    if v.is_nil() {
        // SPEC §1.3: clearing leaves `due` unchanged.
        msg.schedule = None;
        return Ok(Value::Nil);
    }
    let json = lua_to_json(lua, v)?;
    let sched =
        Scheduling::from_json(&json).map_err(|e| mlua::Error::runtime(format!("set_scheduling: {e}")))?;
    msg.due = Some(sched.adjust(msg.due.unwrap_or_else(Utc::now)));
    let normalised = sched.to_json();
    msg.schedule = Some(sched);
    json_to_lua(lua, &normalised)
}

impl UserData for LuaMessage {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("id", |_, m, ()| Ok(m.0.id.to_string()));
        methods.add_method("sender", |_, m, ()| Ok(LuaAddress(m.0.sender.clone())));
        methods.add_method_mut("set_sender", |_, m, v: Value| {
            m.0.sender = address_arg(v)?;
            Ok(())
        });
        methods.add_method("recipient", |lua, m, ()| match m.0.recipients.as_slice() {
            [one] => LuaAddress(one.clone()).into_lua_value(lua),
            many => lua.create_sequence_from(many.iter().cloned().map(LuaAddress)).map(Value::Table),
        });
        methods.add_method("recipient_list", |lua, m, ()| {
            lua.create_sequence_from(m.0.recipients.iter().cloned().map(LuaAddress))
        });
        methods.add_method_mut("set_recipient", |_, m, v: Value| {
            m.0.recipients = match v {
                Value::Table(t) => {
                    t.sequence_values::<Value>().map(|v| address_arg(v?)).collect::<mlua::Result<_>>()?
                }
                other => vec![address_arg(other)?],
            };
            Ok(())
        });
        methods.add_method("num_attempts", |_, m, ()| Ok(m.0.num_attempts));
        methods.add_method_mut("increment_num_attempts", |_, m, ()| {
            m.0.num_attempts = m.0.num_attempts.saturating_add(1);
            Ok(())
        });
        for name in ["queue_name", "get_queue_name"] {
            methods.add_method(name, |_, m, ()| m.0.queue_name().map_err(mlua::Error::runtime));
        }
        methods.add_method("get_meta", |lua, m, key: String| match m.0.meta_value(&key) {
            Some(v) => json_to_lua(lua, &v),
            None => Ok(Value::Nil),
        });
        methods.add_method_mut("set_meta", |lua, m, (key, value): (String, Value)| {
            let json = lua_to_json(lua, value)?;
            m.0.set_meta(key, json);
            Ok(())
        });
        methods.add_method_mut("set_scheduling", |lua, m, v: Value| set_scheduling(lua, &mut m.0, v));
        methods.add_method_mut(
            "import_scheduling_header",
            |lua, m, (name, remove): (String, Option<bool>)| {
                let Some(value) = headers::first_named(&m.0.data, &name) else {
                    return Ok(Value::Nil);
                };
                let json: serde_json::Value = serde_json::from_str(&value)
                    .map_err(|e| runtime_error(lua, format!("{name} header is not valid JSON: {e}")))?;
                let result = set_scheduling(lua, &mut m.0, json_to_lua(lua, &json)?).map_err(|e| {
                    mlua::Error::runtime(format!(
                        "{name} header: {}",
                        super::error::PolicyError::from_lua(&e)
                    ))
                })?;
                if remove.unwrap_or(false) {
                    m.0.data = Bytes::from(headers::remove_all(&m.0.data, &name));
                }
                Ok(result)
            },
        );
        // SPEC §8: set_due(t|nil) returns the due time after Adjust; nil means due now.
        methods.add_method_mut("set_due", |lua, m, t: Option<String>| {
            let due = match t {
                None => None,
                Some(text) => Some(
                    chrono::DateTime::parse_from_rfc3339(&text)
                        .map_err(|e| {
                            runtime_error(lua, format!("set_due: {text:?} is not an RFC 3339 time: {e}"))
                        })?
                        .with_timezone(&Utc),
                ),
            };
            m.0.due = match (&m.0.schedule, due) {
                (Some(s), d) => Some(s.adjust(d.unwrap_or_else(Utc::now))),
                (None, d) => d,
            };
            Ok(m.0.due.map(|d| d.to_rfc3339()))
        });
        super::lua_message_headers::add_methods(methods);
        methods.add_method("get_data", |lua, m, ()| lua.create_string(&m.0.data));
        methods.add_method_mut("set_data", |_, m, data: mlua::LuaString| {
            m.0.data = Bytes::copy_from_slice(&data.as_bytes());
            Ok(())
        });
        // The engine saves at the points that need it; an explicit save is accepted and implied.
        methods.add_method("save", |_, _, ()| Ok(()));
        methods.add_meta_method(MetaMethod::ToString, |_, m, ()| Ok(format!("Message({})", m.0.id)));
    }
}

trait IntoLuaValue {
    fn into_lua_value(self, lua: &Lua) -> mlua::Result<Value>;
}

impl IntoLuaValue for LuaAddress {
    fn into_lua_value(self, lua: &Lua) -> mlua::Result<Value> {
        lua.create_userdata(self).map(Value::UserData)
    }
}
