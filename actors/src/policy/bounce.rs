//! `kumo.configure_bounce_classifier{ files = {...} }`: compile the rules files into the node's
//! bounce classifier (meant for the `init` event, as in KumoMTA). Calling it again with the same
//! files (every Lua state running the same top-level code, say) does not recompile them.

use std::sync::Mutex;

use mlua::{Lua, LuaSerdeExt, Table, Value};
use serde::Deserialize;

use super::kumo::runtime_error;
use crate::model::bounce_classifier::Rules;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    files: Vec<String>,
    // KumoMTA's tuning knobs for its classification thread pool: accepted, not needed here
    // (classification runs as records are logged, with its own cache).
    #[serde(default)]
    #[allow(dead_code)]
    back_pressure: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    pool_size: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    cache_size: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    uncategorized_cache_size: Option<u64>,
}

/// The files (and their text) the installed classifier was built from.
static INSTALLED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    kumo.set(
        "configure_bounce_classifier",
        lua.create_function(|lua, params: Value| {
            let params: Params = lua
                .from_value(params)
                .map_err(|e| runtime_error(lua, format!("configure_bounce_classifier: {e}")))?;
            configure(&params.files)
                .map_err(|e| runtime_error(lua, format!("configure_bounce_classifier: {e}")))
        })?,
    )
}

fn configure(files: &[String]) -> Result<(), String> {
    if files.is_empty() {
        return Err("files lists no rules file".into());
    }
    let mut texts = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
        texts.push((file.clone(), text));
    }
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed == texts {
        return Ok(());
    }
    let mut rules = Rules::default();
    for (file, text) in &texts {
        rules.add_toml(file, text)?;
    }
    let classifier = rules.build()?;
    tracing::info!(files = ?files, rules = classifier.rules(), "bounce classifier configured");
    crate::logging::classify::install(classifier);
    *installed = texts;
    Ok(())
}
