//! `kumo.make_listener_domain{...}` and the `get_listener_domain(domain, listener, conn_meta)`
//! event (KumoMTA's names): per-domain relaying and report handling at the SMTP listener.

use mlua::{Lua, UserData, Value};

use super::convert::json_to_lua;
use super::error::PolicyError;
use super::kumo;
use super::state::PolicyState;
use crate::model::listener_domain::ListenerDomain;

pub const EVENT: &str = "get_listener_domain";

#[derive(Clone)]
pub struct LuaListenerDomain(pub ListenerDomain);
impl UserData for LuaListenerDomain {}

pub fn install(lua: &Lua, kumo_table: &mlua::Table) -> mlua::Result<()> {
    kumo::maker(lua, kumo_table, "make_listener_domain", |json| {
        ListenerDomain::from_json(json).map(LuaListenerDomain)
    })
}

/// `conn_meta` as handlers see it: the connection's fields, and `conn_meta:get_meta(name)` as
/// in KumoMTA's documentation examples.
pub(crate) fn conn_meta_table(lua: &Lua, conn_meta: &serde_json::Value) -> mlua::Result<Value> {
    let value = json_to_lua(lua, conn_meta)?;
    if let Value::Table(t) = &value {
        let get_meta =
            lua.create_function(|_, (this, name): (mlua::Table, String)| this.raw_get::<Value>(name))?;
        t.set("get_meta", get_meta)?;
    }
    Ok(value)
}

impl PolicyState {
    /// The handler's answer for `domain`: None when there is no handler or it returned nil.
    pub fn get_listener_domain(
        &self,
        domain: &str,
        listener: &str,
        conn_meta: &serde_json::Value,
    ) -> Result<Option<ListenerDomain>, PolicyError> {
        self.with_deadline(|| {
            let lua = self.lua();
            let handlers = kumo::handlers(lua, EVENT).map_err(|e| PolicyError::from_lua(&e))?;
            let Some(handler) = handlers.first() else { return Ok(None) };
            let meta = conn_meta_table(lua, conn_meta).map_err(|e| PolicyError::from_lua(&e))?;
            let returned: Value =
                handler.call((domain, listener, meta)).map_err(|e| PolicyError::from_lua(&e))?;
            super::egress::definition(lua, returned, EVENT, ListenerDomain::from_json, |ud| {
                ud.borrow::<LuaListenerDomain>().map(|d| d.0.clone()).ok()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::model::listener_domain::ReportDisposition;
    use crate::policy::PolicyState;
    use ferry_config::PolicySource;
    use serde_json::json;

    fn state(text: &'static str) -> PolicyState {
        PolicyState::load(Some(&PolicySource::Embedded { name: "ld.lua", text })).unwrap()
    }

    #[test]
    fn the_event_gets_domain_listener_and_conn_meta() {
        let s = state(
            r#"
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'fbl.example' then
    return kumo.make_listener_domain { log_arf = 'LogThenDrop' }
  end
  if conn_meta:get_meta('authz_id') == 'daniel' and listener == '0.0.0.0:25' then
    return kumo.make_listener_domain { relay_to = true }
  end
end)
"#,
        );
        let meta = json!({"received_from": "10.0.0.1:5000"});
        let d = s.get_listener_domain("fbl.example", "0.0.0.0:25", &meta).unwrap().unwrap();
        assert_eq!(d.log_arf, ReportDisposition::LogThenDrop);
        assert_eq!(s.get_listener_domain("other.example", "0.0.0.0:25", &meta).unwrap(), None);
        let authed = json!({"authz_id": "daniel"});
        assert!(s.get_listener_domain("other.example", "0.0.0.0:25", &authed).unwrap().unwrap().relay_to);
        assert_eq!(state("").get_listener_domain("x", "l", &meta).unwrap(), None);
    }

    #[test]
    fn a_bad_table_names_the_key_and_line() {
        let s = state(
            "kumo.on('get_listener_domain', function()\n  return kumo.make_listener_domain { relay = true }\nend)",
        );
        let e = s.get_listener_domain("x", "l", &json!({})).unwrap_err().to_string();
        assert!(e.contains("relay") && e.contains("ld.lua:2"), "{e}");
    }
}
