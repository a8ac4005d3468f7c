//! `kumo.make_throttle(name, spec)` and `kumo.configure_redis_throttles{...}` (KumoMTA's
//! names). A throttle object checks the named throttle in `crate::throttles`: local by default,
//! shared through Redis once `configure_redis_throttles` ran (in `init`).
//!
//! Ferry's own keys of `configure_redis_throttles`, beside `redis.open`'s: `node_count` (how many
//! nodes share the limits: while Redis is unreachable each node keeps limit / node_count; default
//! 1), `lease_duration` (a connection slot of a node that stopped renewing comes back after this;
//! default 30 s) and `lease_renew_interval` (default a third of the lease).

use std::time::Duration;

use mlua::{Lua, Table, UserData, UserDataMethods, Value};

use super::kumo::runtime_error;
use super::redis::target_from_params;
use super::time_delta::TimeDelta;
use crate::model::connection_lease::LeaseTiming;
use crate::model::throttle_spec::ThrottleSpec;
use crate::throttles::{self, SharedConfig, ThrottleOutcome, block_on};

pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    kumo.set(
        "make_throttle",
        lua.create_function(|lua, (name, spec): (String, String)| {
            let spec =
                ThrottleSpec::parse(&spec).map_err(|e| runtime_error(lua, format!("make_throttle: {e}")))?;
            Ok(LuaThrottle { name, spec })
        })?,
    )?;
    kumo.set("configure_redis_throttles", lua.create_function(configure_redis_throttles)?)?;
    Ok(())
}

fn configure_redis_throttles(lua: &Lua, params: Table) -> mlua::Result<()> {
    const WHAT: &str = "configure_redis_throttles";
    let ours = ["node_count", "lease_duration", "lease_renew_interval"];
    let (target, extra) = target_from_params(lua, WHAT, &params, &ours)?;
    let mut node_count = 1u32;
    let mut lease = Duration::from_secs(30);
    let mut renew = None;
    for (key, value) in extra {
        match key.as_str() {
            "node_count" => match value {
                Value::Integer(n) if n >= 1 && n <= i64::from(u32::MAX) => node_count = n as u32,
                _ => {
                    return Err(runtime_error(
                        lua,
                        format!("{WHAT}: node_count: a whole number, at least 1"),
                    ));
                }
            },
            "lease_duration" => lease = TimeDelta::from_lua_arg(value)?.0,
            _ => renew = Some(TimeDelta::from_lua_arg(value)?.0),
        }
    }
    let lease = LeaseTiming::new(lease, renew).map_err(|e| runtime_error(lua, format!("{WHAT}: {e}")))?;
    // Throttle checks sit on the delivery path: a dead Redis must cost a moment, not 30 s.
    let target = throttles::RedisTarget {
        connect_timeout: target.connect_timeout.min(Duration::from_secs(2)),
        response_timeout: target.response_timeout.min(Duration::from_secs(2)),
        ..target
    };
    throttles::configure(SharedConfig { target, node_count, lease });
    Ok(())
}

struct LuaThrottle {
    name: String,
    spec: ThrottleSpec,
}

impl LuaThrottle {
    async fn check(&self) -> ThrottleOutcome {
        let list = [(self.name.clone(), self.spec)];
        match tokio::runtime::Handle::try_current() {
            Err(_) => block_on(async move { throttles::throttle(&list).await }),
            Ok(_) => throttles::throttle(&list).await,
        }
    }
}

impl UserData for LuaThrottle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method("throttle", |lua, this, ()| async move {
            let outcome = this.check().await;
            let t = lua.create_table()?;
            t.set("throttled", outcome.throttled)?;
            t.set("limit", outcome.limit)?;
            t.set("remaining", outcome.remaining)?;
            t.set("reset_after", TimeDelta(outcome.reset_after))?;
            t.set("retry_after", outcome.retry_after.map(TimeDelta))?;
            Ok(t)
        });
        methods.add_async_method("sleep_if_throttled", |lua, this, ()| async move {
            let mut throttled = false;
            loop {
                let outcome = this.check().await;
                let Some(wait) = outcome.retry_after.filter(|_| outcome.throttled) else {
                    return Ok(throttled);
                };
                throttled = true;
                match tokio::runtime::Handle::try_current() {
                    // The handler deadline bounds Lua's work, not a wait the policy asked for.
                    Err(_) => {
                        let paused = super::state::pause_deadline(&lua);
                        std::thread::sleep(wait);
                        super::state::resume_deadline(&lua, paused);
                    }
                    Ok(_) => tokio::time::sleep(wait).await,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use ferry_config::PolicySource;

    use crate::policy::PolicyState;

    fn load(text: &str) -> Result<PolicyState, String> {
        let text: &'static str = Box::leak(text.to_string().into_boxed_str());
        PolicyState::load(Some(&PolicySource::Embedded { name: "test.lua", text })).map_err(|e| e.to_string())
    }

    #[test]
    fn a_local_throttle_counts_and_says_when_to_retry() {
        load(
            "local t = kumo.make_throttle('unit-local', '3/h')
             for i = 1, 3 do
               local r = t:throttle()
               assert(not r.throttled and r.remaining == 3 - i, i)
             end
             local r = t:throttle()
             assert(r.throttled and r.remaining == 0 and r.retry_after.seconds > 1190, r.retry_after.seconds)
             -- Same name, same throttle.
             assert(kumo.make_throttle('unit-local', '3/h'):throttle().throttled)
             assert(not kumo.make_throttle('unit-other', '3/h'):throttle().throttled)",
        )
        .unwrap();
    }

    #[test]
    fn bad_specs_and_keys_name_themselves_and_the_line() {
        for (lua, expect) in [
            ("kumo.make_throttle('x', '10/fortnight')", "make_throttle: invalid throttle \"10/fortnight\""),
            ("redis.open { node = 'http://nowhere/' }", "redis.open: node"),
            ("redis.open { nodes = 'redis://127.0.0.1/' }", "unknown key \"nodes\""),
            ("redis.open { pool_size = 3 }", "node is required"),
            ("kumo.configure_redis_throttles { node = 'redis://127.0.0.1/', node_count = 0 }", "node_count"),
            (
                "kumo.configure_redis_throttles { node = 'redis://127.0.0.1/', lease_duration = '3s', lease_renew_interval = '5s' }",
                "shorter than the lease",
            ),
        ] {
            let err = load(&format!("\n{lua}\n")).err().unwrap_or_else(|| panic!("{lua} loaded"));
            assert!(err.contains(expect) && err.contains("test.lua:2"), "{lua}: {err}");
        }
    }
}
