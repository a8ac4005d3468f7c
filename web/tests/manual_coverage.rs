//! The reference manual (`docs/*.md`) names everything an operator can set, call or ask: every
//! config key, every `kumo.*` function, every message method, every policy event and every HTTP
//! endpoint. The lists come from the code at test time (the config schema, a loaded Lua state,
//! the OpenAPI document), so a new one fails here until it is documented.

use std::path::Path;

use ferry_actors::model::{Message, MessageId};
use ferry_actors::policy::PolicyState;
use ferry_actors::policy::lua_message::LuaMessage;
use mlua::{Table, Value};

fn manual() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).expect("docs/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
            text.push('\n');
        }
    }
    text
}

/// `name` occurs in `text` as a whole name: not followed by another name character.
fn mentions(text: &str, name: &str) -> bool {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(at, _)| {
        let rest = &text[at + name.len()..];
        // `kumo.xfer` is not `kumo.xfer.xfer`, but a sentence may end after a name.
        !(rest.starts_with(name_char) || (rest.starts_with('.') && rest[1..].starts_with(name_char)))
    })
}

fn assert_all_documented(what: &str, names: &[String], text: &str) {
    let missing: Vec<&String> = names.iter().filter(|n| !mentions(text, n)).collect();
    assert!(
        missing.is_empty(),
        "{what} in the code but not in docs/ ({} of {}): {missing:#?}",
        missing.len(),
        names.len()
    );
}

#[test]
fn every_config_key_is_in_the_manual() {
    let text = manual();
    let keys = ferry_config::keys::all_keys();
    assert!(keys.len() > 50, "{keys:?}");
    // A key as `smtp.listen`; a table may also be its heading, `[smtp]` or `[[smtp.listeners]]`.
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !mentions(&text, &format!("`{k}`")) && !text.contains(&format!("[{k}]")))
        .collect();
    assert!(missing.is_empty(), "config keys in the code but not in docs/: {missing:#?}");
}

/// Functions of `table` (recursively), as `prefix.name`.
fn functions(table: &Table, prefix: &str, out: &mut Vec<String>) {
    for pair in table.pairs::<String, Value>() {
        let (name, value) = pair.unwrap();
        match value {
            Value::Function(_) => out.push(format!("{prefix}.{name}")),
            Value::Table(t) => functions(&t, &format!("{prefix}.{name}"), out),
            _ => {}
        }
    }
}

#[test]
fn every_kumo_function_is_in_the_manual() {
    let state = PolicyState::load(None).expect("the built-in policy state loads");
    let kumo: Table = state.lua().globals().get("kumo").unwrap();
    let mut names = Vec::new();
    functions(&kumo, "kumo", &mut names);
    names.sort();
    assert!(names.iter().any(|n| n == "kumo.on") && names.len() > 20, "{names:?}");
    assert_all_documented("kumo functions", &names, &manual());
}

#[test]
fn every_message_method_is_in_the_manual() {
    let state = PolicyState::load(None).unwrap();
    let lua = state.lua();
    let msg =
        Message::new(MessageId::from_bytes([1; 16]), "s@example.com".into(), vec![], bytes::Bytes::new());
    let ud = lua.create_userdata(LuaMessage(msg)).unwrap();
    let index: Table = ud.metatable().unwrap().get("__index").expect("the message's methods are a table");
    let mut names: Vec<String> =
        index.pairs::<String, Value>().map(|p| format!("msg:{}", p.unwrap().0)).collect();
    names.sort();
    assert!(names.iter().any(|n| n == "msg:set_meta"), "{names:?}");
    assert_all_documented("message methods", &names, &manual());
}

#[test]
fn every_policy_event_is_in_the_manual() {
    // Events that take several handlers are listed in the code; the others are named where fired.
    let mut events: Vec<String> =
        ferry_actors::policy::kumo::MULTIPLE_EVENTS.iter().map(|e| format!("`{e}`")).collect();
    events.push(format!("`{}`", ferry_actors::policy::listener_domain::EVENT));
    assert_all_documented("policy events", &events, &manual());
}

#[test]
fn every_http_endpoint_is_in_the_manual() {
    let doc = serde_json::to_value(ferry_web::openapi_document()).unwrap();
    let mut endpoints = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            endpoints.push(format!("{} {path}", method.to_ascii_uppercase()));
        }
    }
    assert!(endpoints.len() > 20, "{endpoints:?}");
    assert_all_documented("HTTP endpoints", &endpoints, &manual());
}
