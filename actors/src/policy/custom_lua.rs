//! custom_lua delivery (SPEC §7.3) on the policy side: the constructor event builds a connection
//! object with a `send` method; it is cached per Lua state and reused until an error.

use mlua::{Table, Value};

use super::error::PolicyError;
use super::kumo;
use super::lua_message::LuaMessage;
use super::state::PolicyState;
use crate::model::Message;
use crate::model::queue_name::QueueNameParts;

const CONNECTIONS: &str = "ferry.lua_connections";

impl PolicyState {
    fn connection(&self, constructor: &str, key: &str, parts: &QueueNameParts) -> Result<Table, PolicyError> {
        let lua = self.lua();
        let cache: Table = match lua
            .named_registry_value::<Option<Table>>(CONNECTIONS)
            .map_err(|e| PolicyError::from_lua(&e))?
        {
            Some(t) => t,
            None => {
                let t = lua.create_table().map_err(|e| PolicyError::from_lua(&e))?;
                lua.set_named_registry_value(CONNECTIONS, t.clone())
                    .map_err(|e| PolicyError::from_lua(&e))?;
                t
            }
        };
        if let Ok(Some(conn)) = cache.get::<Option<Table>>(key) {
            return Ok(conn);
        }
        let handler = kumo::handlers(lua, constructor)
            .map_err(|e| PolicyError::from_lua(&e))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                PolicyError::Lua(format!("no handler registered for constructor event '{constructor}'"))
            })?;
        let conn: Value = handler
            .call((parts.domain.as_str(), parts.tenant.as_deref(), parts.campaign.as_deref()))
            .map_err(|e| PolicyError::from_lua(&e))?;
        let Value::Table(conn) = conn else {
            return Err(PolicyError::Lua(format!(
                "constructor '{constructor}' must return an object with a send method"
            )));
        };
        cache.set(key, conn.clone()).map_err(|e| PolicyError::from_lua(&e))?;
        Ok(conn)
    }

    fn forget_connection(&self, key: &str) {
        if let Ok(Some(cache)) = self.lua().named_registry_value::<Option<Table>>(CONNECTIONS) {
            let _ = cache.set(key, Value::Nil);
        }
    }

    /// Call `send(msg)` on the queue's connection object. `Ok(text)` is the disposition to log.
    /// Any error forgets the connection so the next message constructs a new one; so does a 421.
    pub fn custom_lua_send(
        &self,
        constructor: &str,
        queue: &str,
        parts: &QueueNameParts,
        msg: Message,
    ) -> (Message, Result<String, PolicyError>) {
        let key = format!("{constructor}\u{0}{queue}");
        let conn = match self.connection(constructor, &key, parts) {
            Ok(c) => c,
            Err(e) => return (msg, Err(e)),
        };
        let id = msg.id;
        let ud = match self.lua().create_userdata(LuaMessage(msg)) {
            Ok(ud) => ud,
            Err(e) => panic!("cannot create message userdata for {id}: {e}"),
        };
        let result = self
            .with_deadline(|| {
                conn.get::<mlua::Function>("send")
                    .and_then(|send| send.call::<Value>((conn.clone(), ud.clone())))
            })
            .map_err(|e| PolicyError::from_lua(&e))
            .map(|v| match v {
                Value::String(s) => s.to_string_lossy(),
                Value::Nil => String::new(),
                other => other.to_string().unwrap_or_default(),
            });
        if matches!(&result, Err(PolicyError::Rejected { code, .. }) if *code != 421 && (400..500).contains(code))
        {
            // A plain 4xx keeps the connection; 421 and every other error drop it.
        } else if result.is_err() {
            self.forget_connection(&key);
        }
        let msg = match ud.take::<LuaMessage>() {
            Ok(LuaMessage(m)) => m,
            Err(e) => panic!("message userdata {id} could not be taken back: {e}"),
        };
        (msg, result)
    }
}
