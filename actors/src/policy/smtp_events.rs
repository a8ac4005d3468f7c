//! The per-command listener events: `smtp_server_ehlo(domain, conn_meta)`,
//! `smtp_server_mail_from(sender, conn_meta)` and `smtp_server_rcpt_to(recipient, conn_meta)`.
//! Handlers run in registration order; `kumo.reject(code, text)` in one refuses the command with
//! that reply. Sender and recipient are address objects (`.user`, `.domain`, `.email`), as in
//! KumoMTA.

use mlua::IntoLua;

use super::error::PolicyError;
use super::kumo;
use super::listener_domain::conn_meta_table;
use super::lua_message::LuaAddress;
use super::state::PolicyState;

/// What the command carries: the EHLO domain, or an envelope address.
pub enum CommandArg {
    Domain(String),
    Address(String),
}

impl PolicyState {
    pub fn smtp_command_event(
        &self,
        event: &str,
        arg: CommandArg,
        conn_meta: &serde_json::Value,
    ) -> Result<(), PolicyError> {
        self.with_deadline(|| {
            let lua = self.lua();
            let handlers = kumo::handlers(lua, event).map_err(|e| PolicyError::from_lua(&e))?;
            if handlers.is_empty() {
                return Ok(());
            }
            let meta = conn_meta_table(lua, conn_meta).map_err(|e| PolicyError::from_lua(&e))?;
            let arg = match arg {
                CommandArg::Domain(d) => d.into_lua(lua),
                CommandArg::Address(a) => LuaAddress(a).into_lua(lua),
            }
            .map_err(|e| PolicyError::from_lua(&e))?;
            for handler in handlers {
                let returned: mlua::MultiValue =
                    handler.call((arg.clone(), meta.clone())).map_err(|e| PolicyError::from_lua(&e))?;
                if !returned.is_empty() {
                    break;
                }
            }
            Ok(())
        })
    }
}
