//! `kumo.dkim.rsa_sha256_signer{...}` and `kumo.dkim.ed25519_signer{...}` (KumoMTA's names and
//! parameters). Each call returns the process-wide cached signer for its parameters, so calling
//! them per message, as KumoMTA policies do, builds a key only once per TTL.

use std::sync::Arc;
use std::time::Instant;

use mlua::{Lua, Table, UserData, Value};

use super::kumo::runtime_error;
use super::secrets::key_source;
use super::time_delta::TimeDelta;
use crate::dkim::{DEFAULT_TTL, KeyKind, Signer, SignerSpec, signer_cache};
use crate::model::dkim::Canonicalization;

/// What `msg:dkim_sign` takes.
pub struct LuaSigner(pub Arc<Signer>);

impl UserData for LuaSigner {}

const PARAMS: &[&str] = &[
    "domain",
    "selector",
    "headers",
    "key",
    "header_canonicalization",
    "body_canonicalization",
    "expiration",
    "atps",
    "atpsh",
    "agent_user_identifier",
    "body_length",
    "reporting",
    "over_sign",
    "ttl",
];

fn canonicalization(t: &Table, field: &str) -> mlua::Result<Canonicalization> {
    match t.get::<Option<String>>(field)? {
        None => Ok(Canonicalization::default()),
        Some(text) => {
            Canonicalization::parse(&text).map_err(|e| mlua::Error::runtime(format!("{field}: {e}")))
        }
    }
}

fn required(t: &Table, field: &str) -> mlua::Result<String> {
    t.get::<Option<String>>(field)?.ok_or_else(|| mlua::Error::runtime(format!("{field} is required")))
}

fn spec(kind: KeyKind, t: &Table) -> mlua::Result<SignerSpec> {
    for pair in t.pairs::<String, Value>() {
        let (name, _) = pair?;
        if !PARAMS.contains(&name.as_str()) {
            return Err(mlua::Error::runtime(format!("unknown parameter {name:?}")));
        }
    }
    let headers: Vec<String> = t
        .get::<Option<Vec<String>>>("headers")?
        .ok_or_else(|| mlua::Error::runtime("headers is required"))?;
    let key = match t.get::<Value>("key")? {
        Value::Nil => return Err(mlua::Error::runtime("key is required")),
        v => key_source(v)?,
    };
    let (domain, selector) = (required(t, "domain")?, required(t, "selector")?);
    Ok(SignerSpec {
        domain,
        selector,
        headers,
        header_canonicalization: canonicalization(t, "header_canonicalization")?,
        body_canonicalization: canonicalization(t, "body_canonicalization")?,
        expiration: t.get("expiration")?,
        atps: t.get("atps")?,
        atpsh: t.get("atpsh")?,
        agent_user_identifier: t.get("agent_user_identifier")?,
        body_length: t.get::<Option<bool>>("body_length")?.unwrap_or(false),
        reporting: t.get::<Option<bool>>("reporting")?.unwrap_or(false),
        over_sign: t.get::<Option<bool>>("over_sign")?.unwrap_or(false),
        ..SignerSpec::new(kind, "", "", &[], key)
    })
}

fn signer(lua: &Lua, kind: KeyKind, t: Table) -> mlua::Result<LuaSigner> {
    let what = match kind {
        KeyKind::RsaSha256 => "kumo.dkim.rsa_sha256_signer",
        KeyKind::Ed25519 => "kumo.dkim.ed25519_signer",
    };
    let spec = spec(kind, &t).map_err(|e| runtime_error(lua, format!("{what}: {e}")))?;
    let ttl = match t.get::<Value>("ttl")? {
        Value::Nil => DEFAULT_TTL,
        v => TimeDelta::from_lua_arg(v).map_err(|e| runtime_error(lua, format!("{what}: ttl: {e}")))?.0,
    };
    let signer = signer_cache()
        .get(spec, ttl, Instant::now())
        .map_err(|e| runtime_error(lua, format!("{what}: {e}")))?;
    Ok(LuaSigner(signer))
}

pub fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let dkim = lua.create_table()?;
    dkim.set("rsa_sha256_signer", lua.create_function(|lua, t: Table| signer(lua, KeyKind::RsaSha256, t))?)?;
    dkim.set("ed25519_signer", lua.create_function(|lua, t: Table| signer(lua, KeyKind::Ed25519, t))?)?;
    kumo.set("dkim", dkim)
}
