//! `kumo.make_queue_config{...}` and the `get_queue_config` event (SPEC §2.2).

use mlua::{Lua, UserData, Value};

use super::convert::lua_to_json;
use super::error::PolicyError;
use super::kumo;
use super::state::PolicyState;
use crate::model::queue_config::QueueConfig;
use crate::model::queue_name::QueueNameParts;

/// A validated config, as `make_queue_config` returns it.
#[derive(Clone)]
pub struct LuaQueueConfig(pub QueueConfig);

impl UserData for LuaQueueConfig {}

pub fn install(lua: &Lua, kumo_table: &mlua::Table) -> mlua::Result<()> {
    kumo_table.set(
        "make_queue_config",
        lua.create_function(|lua, params: Value| {
            let json = lua_to_json(lua, params)?;
            QueueConfig::from_json(&json)
                .map(LuaQueueConfig)
                .map_err(|e| kumo::runtime_error(lua, format!("make_queue_config: {e}")))
        })?,
    )
}

impl PolicyState {
    /// Run the `get_queue_config` chain: the first handler returning a config wins; nil (or
    /// nothing) continues; with no config from any handler, all defaults apply.
    pub fn get_queue_config(&self, parts: &QueueNameParts) -> Result<QueueConfig, PolicyError> {
        self.with_deadline(|| self.get_queue_config_inner(parts))
    }

    fn get_queue_config_inner(&self, parts: &QueueNameParts) -> Result<QueueConfig, PolicyError> {
        let lua = self.lua();
        let handlers = kumo::handlers(lua, "get_queue_config").map_err(|e| PolicyError::from_lua(&e))?;
        for handler in handlers {
            let returned: Value = handler
                .call((
                    parts.domain.as_str(),
                    parts.tenant.as_deref(),
                    parts.campaign.as_deref(),
                    parts.routing_domain.as_deref(),
                ))
                .map_err(|e| PolicyError::from_lua(&e))?;
            match returned {
                Value::Nil => continue,
                Value::UserData(ud) => {
                    let config = ud.borrow::<LuaQueueConfig>().map_err(|_| {
                        PolicyError::Lua("get_queue_config must return kumo.make_queue_config{...}".into())
                    })?;
                    return Ok(config.0.clone());
                }
                Value::Table(t) => {
                    let json = lua_to_json(lua, Value::Table(t)).map_err(|e| PolicyError::from_lua(&e))?;
                    return QueueConfig::from_json(&json).map_err(PolicyError::Lua);
                }
                other => {
                    return Err(PolicyError::Lua(format!(
                        "get_queue_config returned a {}; expected kumo.make_queue_config{{...}}",
                        other.type_name()
                    )));
                }
            }
        }
        Ok(QueueConfig::default())
    }
}
