//! `kumo.memoize(fn, { name, ttl, capacity })`: a TTL cache in front of an expensive lookup.
//! Arguments and results are kept as JSON, so the cache is shared by every Lua state of the
//! process (one cache per name) and results must be plain data (strings, numbers, tables).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use mlua::{Function, Lua, MultiValue, Table};

use super::convert::{json_to_lua, lua_to_json};
use super::kumo::runtime_error;
use super::time_delta::TimeDelta;
use crate::model::ttl_cache::TtlCache;

type Cache = Arc<Mutex<TtlCache<String, serde_json::Value>>>;

/// Caches by name. Every policy state runs `kumo.memoize` as it loads; the first creates it.
static CACHES: LazyLock<Mutex<HashMap<String, Cache>>> = LazyLock::new(Default::default);

fn cache_named(name: &str, make: impl FnOnce() -> TtlCache<String, serde_json::Value>) -> Cache {
    let mut caches = CACHES.lock().unwrap_or_else(|p| p.into_inner());
    caches.entry(name.to_string()).or_insert_with(|| Arc::new(Mutex::new(make()))).clone()
}

fn memoize(lua: &Lua, (f, params): (Function, Table)) -> mlua::Result<Function> {
    let name: String = params
        .get::<Option<String>>("name")?
        .ok_or_else(|| runtime_error(lua, "kumo.memoize: name is required"))?;
    let ttl = TimeDelta::from_lua_arg(params.get("ttl")?)
        .map_err(|e| runtime_error(lua, format!("kumo.memoize: ttl: {e}")))?
        .0;
    let capacity: usize = params
        .get::<Option<usize>>("capacity")?
        .ok_or_else(|| runtime_error(lua, "kumo.memoize: capacity is required"))?;
    let cache = cache_named(&name, || TtlCache::new(ttl, capacity));
    lua.create_function(move |lua, args: MultiValue| {
        let args = args.into_iter().map(|v| lua_to_json(lua, v)).collect::<mlua::Result<Vec<_>>>()?;
        let key = serde_json::Value::Array(args.clone()).to_string();
        let lock = |c: &Cache| c.lock().map(|g| g.get(&key, Instant::now())).unwrap_or(None);
        let results = match lock(&cache) {
            Some(hit) => hit,
            None => {
                let call_args =
                    args.iter().map(|a| json_to_lua(lua, a)).collect::<mlua::Result<MultiValue>>()?;
                let returned = f.call::<MultiValue>(call_args)?;
                let results = serde_json::Value::Array(
                    returned.into_iter().map(|v| lua_to_json(lua, v)).collect::<mlua::Result<Vec<_>>>()?,
                );
                if let Ok(mut c) = cache.lock() {
                    c.insert(key, results.clone(), Instant::now());
                }
                results
            }
        };
        match results {
            serde_json::Value::Array(values) => values.iter().map(|v| json_to_lua(lua, v)).collect(),
            other => Ok(MultiValue::from_iter([json_to_lua(lua, &other)?])),
        }
    })
}

pub fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    kumo.set("memoize", lua.create_function(memoize)?)
}
