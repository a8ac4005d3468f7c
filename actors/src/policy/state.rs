//! One Lua state with the policy loaded. Lives on one policy thread for its whole life.

use mlua::{Lua, MultiValue};

use super::error::PolicyError;
use super::kumo::{self, Loading};
use super::lua_message::LuaMessage;
use crate::model::Message;
use ferry_config::PolicySource;

pub struct PolicyState {
    lua: Lua,
}

impl PolicyState {
    /// Create a state and run the policy file in it. Errors name the file and line.
    pub fn load(source: Option<&PolicySource>) -> Result<PolicyState, PolicyError> {
        let lua = Lua::new();
        kumo::install(&lua).map_err(|e| PolicyError::Load(e.to_string()))?;
        if let Some(source) = source {
            let (name, text) = match source {
                PolicySource::File(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| PolicyError::Load(format!("cannot read {}: {e}", path.display())))?;
                    (path.display().to_string(), text)
                }
                PolicySource::Embedded { name, text } => (name.to_string(), text.to_string()),
            };
            lua.set_app_data(Loading);
            let result = lua.load(text).set_name(format!("@{name}")).exec();
            lua.remove_app_data::<Loading>();
            result.map_err(|e| match PolicyError::from_lua(&e) {
                PolicyError::Lua(m) => PolicyError::Load(m),
                other => PolicyError::Load(other.to_string()),
            })?;
        }
        Ok(PolicyState { lua })
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    pub fn registered_events(&self) -> Vec<String> {
        kumo::registered_events(&self.lua).unwrap_or_default()
    }

    /// Run a Multiple event's handler chain over a message (SPEC §3.3): a handler that returns
    /// nothing lets the chain continue; any returned value, explicit nil included, stops it.
    /// The message comes back whatever happened, with the changes handlers made before any error.
    pub fn run_message_chain(
        &self,
        event: &str,
        msg: Message,
        extra: impl Fn(&Lua) -> mlua::Result<MultiValue>,
    ) -> (Message, Result<(), PolicyError>) {
        let handlers = match kumo::handlers(&self.lua, event) {
            Ok(h) => h,
            Err(e) => return (msg, Err(PolicyError::from_lua(&e))),
        };
        if handlers.is_empty() {
            return (msg, Ok(()));
        }
        let id = msg.id;
        let ud = match self.lua.create_userdata(LuaMessage(msg)) {
            Ok(ud) => ud,
            Err(e) => panic!("cannot create message userdata for {id}: {e}"),
        };
        let mut outcome = Ok(());
        for handler in handlers {
            let args = extra(&self.lua).map(|mut rest| {
                rest.push_front(mlua::Value::UserData(ud.clone()));
                rest
            });
            let result = args.and_then(|args| handler.call::<MultiValue>(args));
            match result {
                Ok(returned) if returned.is_empty() => continue,
                Ok(_) => break,
                Err(e) => {
                    outcome = Err(PolicyError::from_lua(&e));
                    break;
                }
            }
        }
        match ud.take::<LuaMessage>() {
            Ok(LuaMessage(msg)) => (msg, outcome),
            Err(e) => panic!("message userdata {id} could not be taken back: {e}"),
        }
    }
}
