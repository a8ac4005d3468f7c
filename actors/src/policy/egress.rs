//! `kumo.make_egress_source{...}`, `kumo.make_egress_pool{...}` and the `get_egress_source` /
//! `get_egress_pool` events (KumoMTA's names; seed 002's default pool and source when the policy
//! defines none).

use mlua::{Lua, UserData, Value};

use super::convert::lua_to_json;
use super::error::PolicyError;
use super::kumo;
use super::state::PolicyState;
use crate::model::egress::{EgressPool, EgressSource, UNSPECIFIED};
use crate::model::egress_path::EgressPathConfig;

#[derive(Clone)]
pub struct LuaEgressSource(pub EgressSource);
impl UserData for LuaEgressSource {}

#[derive(Clone)]
pub struct LuaEgressPool(pub EgressPool);
impl UserData for LuaEgressPool {}

#[derive(Clone)]
pub struct LuaEgressPath(pub EgressPathConfig);
impl UserData for LuaEgressPath {}

pub fn install(lua: &Lua, kumo_table: &mlua::Table) -> mlua::Result<()> {
    kumo::maker(lua, kumo_table, "make_egress_source", |json| {
        EgressSource::from_json(json).map(LuaEgressSource)
    })?;
    kumo::maker(lua, kumo_table, "make_egress_pool", |json| EgressPool::from_json(json).map(LuaEgressPool))?;
    kumo::maker(lua, kumo_table, "make_egress_path", |json| {
        EgressPathConfig::from_json(json).map(LuaEgressPath)
    })
}

impl PolicyState {
    /// The source called `name`: from `get_egress_source`, or the built-in `unspecified`.
    pub fn get_egress_source(&self, name: &str) -> Result<EgressSource, PolicyError> {
        let found = self.with_deadline(|| {
            self.call_definition("get_egress_source", name, EgressSource::from_json, |ud| {
                ud.borrow::<LuaEgressSource>().map(|s| s.0.clone()).ok()
            })
        })?;
        match found {
            Some(source) => Ok(source),
            None if name == UNSPECIFIED => Ok(EgressSource::unspecified()),
            None => Err(PolicyError::Lua(format!("get_egress_source returned nothing for source {name:?}"))),
        }
    }

    /// The pool called `name`: from `get_egress_pool`, or the built-in `unspecified`.
    pub fn get_egress_pool(&self, name: &str) -> Result<EgressPool, PolicyError> {
        let found = self.with_deadline(|| {
            self.call_definition("get_egress_pool", name, EgressPool::from_json, |ud| {
                ud.borrow::<LuaEgressPool>().map(|p| p.0.clone()).ok()
            })
        })?;
        match found {
            Some(pool) => Ok(pool),
            None if name == UNSPECIFIED => Ok(EgressPool::unspecified()),
            None => Err(PolicyError::Lua(format!("get_egress_pool returned nothing for pool {name:?}"))),
        }
    }

    /// The path config of a ready queue: `get_egress_path_config(routing_domain, egress_source,
    /// site_name)`, or every default when the policy has no handler or it returns nil.
    pub fn get_egress_path_config(
        &self,
        routing_domain: &str,
        source: &str,
        site: &str,
    ) -> Result<EgressPathConfig, PolicyError> {
        self.with_deadline(|| {
            let lua = self.lua();
            let event = "get_egress_path_config";
            let handlers = kumo::handlers(lua, event).map_err(|e| PolicyError::from_lua(&e))?;
            let Some(handler) = handlers.first() else { return Ok(EgressPathConfig::default()) };
            let returned: Value =
                handler.call((routing_domain, source, site)).map_err(|e| PolicyError::from_lua(&e))?;
            match returned {
                Value::Nil => Ok(EgressPathConfig::default()),
                Value::UserData(ud) => ud.borrow::<LuaEgressPath>().map(|p| p.0.clone()).map_err(|_| {
                    PolicyError::Lua(format!("{event} must return kumo.make_egress_path{{...}}"))
                }),
                Value::Table(t) => {
                    let json = lua_to_json(lua, Value::Table(t)).map_err(|e| PolicyError::from_lua(&e))?;
                    EgressPathConfig::from_json(&json).map_err(|e| PolicyError::Lua(format!("{event}: {e}")))
                }
                other => Err(PolicyError::Lua(format!("{event} returned a {}", other.type_name()))),
            }
        })
    }

    /// `smtp_server_auth_plain(authz, authc, password, conn_meta)`: true admits the client. No
    /// handler, or anything but `true`, refuses.
    pub fn smtp_server_auth_plain(
        &self,
        authz: &str,
        authc: &str,
        password: &str,
        conn_meta: &serde_json::Value,
    ) -> Result<bool, PolicyError> {
        self.with_deadline(|| {
            let lua = self.lua();
            let handlers =
                kumo::handlers(lua, "smtp_server_auth_plain").map_err(|e| PolicyError::from_lua(&e))?;
            let Some(handler) = handlers.first() else { return Ok(false) };
            let meta = super::convert::json_to_lua(lua, conn_meta).map_err(|e| PolicyError::from_lua(&e))?;
            let verdict: Value =
                handler.call((authz, authc, password, meta)).map_err(|e| PolicyError::from_lua(&e))?;
            Ok(matches!(verdict, Value::Boolean(true)))
        })
    }

    /// Call the event's handler with `name`; Ok(None) when there is no handler or it returned nil.
    /// A plain table is accepted as if passed to the matching `make_*` function.
    fn call_definition<T>(
        &self,
        event: &str,
        name: &str,
        from_json: impl Fn(&serde_json::Value) -> Result<T, String>,
        from_userdata: impl Fn(&mlua::AnyUserData) -> Option<T>,
    ) -> Result<Option<T>, PolicyError> {
        let lua = self.lua();
        let handlers = kumo::handlers(lua, event).map_err(|e| PolicyError::from_lua(&e))?;
        let Some(handler) = handlers.first() else { return Ok(None) };
        let returned: Value = handler.call(name).map_err(|e| PolicyError::from_lua(&e))?;
        definition(lua, returned, &format!("{event} for {name:?}"), from_json, from_userdata)
    }
}

/// What a definition event returned: a `make_*` object, a plain table validated as one, or nil
/// (None). `what` names the event (and argument) in errors.
pub(super) fn definition<T>(
    lua: &Lua,
    returned: Value,
    what: &str,
    from_json: impl Fn(&serde_json::Value) -> Result<T, String>,
    from_userdata: impl Fn(&mlua::AnyUserData) -> Option<T>,
) -> Result<Option<T>, PolicyError> {
    match returned {
        Value::Nil => Ok(None),
        Value::UserData(ud) => from_userdata(&ud)
            .map(Some)
            .ok_or_else(|| PolicyError::Lua(format!("{what}: the wrong kind of object"))),
        Value::Table(t) => {
            let json = lua_to_json(lua, Value::Table(t)).map_err(|e| PolicyError::from_lua(&e))?;
            from_json(&json).map(Some).map_err(|e| PolicyError::Lua(format!("{what}: {e}")))
        }
        other => Err(PolicyError::Lua(format!("{what} returned a {}", other.type_name()))),
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::PolicyState;
    use ferry_config::PolicySource;

    fn state(text: &'static str) -> PolicyState {
        PolicyState::load(Some(&PolicySource::Embedded { name: "egress.lua", text })).unwrap()
    }

    #[test]
    fn defaults_without_a_policy_and_definitions_with_one() {
        let s = state("");
        assert_eq!(s.get_egress_pool("unspecified").unwrap().entries[0].name, "unspecified");
        assert_eq!(s.get_egress_source("unspecified").unwrap().source_address, None);
        assert!(s.get_egress_pool("other").is_err(), "an undefined pool is an error, not a silent default");

        let s = state(
            r#"
kumo.on('get_egress_source', function(name)
  return kumo.make_egress_source { name = name, source_address = '127.0.0.2', ehlo_domain = name .. '.example' }
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool { name = name, entries = { { name = 'ip-1', weight = 3 }, { name = 'ip-2' } } }
end)
"#,
        );
        let pool = s.get_egress_pool("warm").unwrap();
        assert_eq!((pool.name.as_str(), pool.entries[0].weight, pool.entries[1].weight), ("warm", 3, 1));
        let src = s.get_egress_source("ip-1").unwrap();
        assert_eq!(src.ehlo_domain.as_deref(), Some("ip-1.example"));
    }

    #[test]
    fn path_configs_come_from_the_event_with_its_three_arguments() {
        let s = state("");
        assert_eq!(
            s.get_egress_path_config("x.example", "unspecified", "mx:x.example").unwrap().connection_limit,
            32
        );
        let s = state(
            "kumo.on('get_egress_path_config', function(domain, source, site)\n  if source == 'ip-1' and domain == 'x.example' then return kumo.make_egress_path { connection_limit = 2 } end\nend)",
        );
        assert_eq!(
            s.get_egress_path_config("x.example", "ip-1", "mx:x.example").unwrap().connection_limit,
            2
        );
        assert_eq!(
            s.get_egress_path_config("y.example", "ip-1", "mx:y.example").unwrap().connection_limit,
            32
        );
        let s = state(
            "kumo.on('get_egress_path_config', function()\n  return kumo.make_egress_path { conection_limit = 2 }\nend)",
        );
        let e = s.get_egress_path_config("x", "s", "site").unwrap_err().to_string();
        assert!(e.contains("conection_limit") && e.contains("egress.lua:2"), "{e}");
    }

    #[test]
    fn a_bad_definition_names_the_key_and_the_lua_line() {
        let s = state(
            "kumo.on('get_egress_pool', function(name)\n  return kumo.make_egress_pool { name = name, entries = { { name = 'a', weight = -2 } } }\nend)",
        );
        let e = s.get_egress_pool("p").unwrap_err().to_string();
        assert!(e.contains("entries[1].weight") && e.contains("egress.lua:2"), "{e}");
    }
}
