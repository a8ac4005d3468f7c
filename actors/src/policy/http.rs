//! `kumo.http` (KumoMTA's names): `build_client{ timeout, user_agent }` → `client:get/post/put/
//! patch/delete/head(url)` → a request builder (`header`, `basic_auth`, `bearer_auth`, `body`,
//! `timeout`) → `send()` → a response (`status_code`, `status_reason`, `status_is_success`, ...,
//! `text`, `headers`).
//!
//! `send` is async: it runs in the Lua states custom_lua connections own, on the delivery
//! arbiters, so a slow webhook holds its own connection and nothing else (no shared policy
//! state, no thread). The handler deadline is paused while a request is in flight: it bounds
//! the time Lua runs, not the time the far end takes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mlua::{AnyUserData, Lua, Table, UserData, UserDataMethods, Value};

use super::kumo::runtime_error;
use super::time_delta::TimeDelta;

/// Present in Lua states that may make HTTP requests (custom_lua connections): the roots
/// requests are verified against.
pub struct HttpContext {
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Response bodies are read up to this size.
const MAX_BODY: usize = 16 << 20;

pub(crate) fn install(lua: &Lua, kumo: &Table) -> mlua::Result<()> {
    let http = lua.create_table()?;
    http.set(
        "build_client",
        lua.create_function(|lua, params: Option<Table>| {
            let Some(ctx) = lua.app_data_ref::<HttpContext>() else {
                return Err(runtime_error(
                    lua,
                    "kumo.http.build_client: HTTP requests are made from custom_lua connections \
                     (the constructor event and send); this handler runs in a shared policy state",
                ));
            };
            let mut timeout = Duration::from_secs(60);
            let mut user_agent = format!("Ferry/{}", env!("CARGO_PKG_VERSION"));
            if let Some(p) = params {
                for pair in p.pairs::<String, Value>() {
                    let (key, value) = pair?;
                    match key.as_str() {
                        "timeout" => timeout = TimeDelta::from_lua_arg(value)?.0,
                        "user_agent" => user_agent = value.to_string()?,
                        // KumoMTA's connection-pool knobs: awc pools by itself.
                        "connection_verbose" | "pool_idle_timeout" => {}
                        other => {
                            return Err(runtime_error(
                                lua,
                                format!("kumo.http.build_client: unknown key {other:?}"),
                            ));
                        }
                    }
                }
            }
            let client = crate::xfer::http_client(ctx.tls.as_ref(), timeout);
            Ok(HttpClient { client, user_agent })
        })?,
    )?;
    kumo.set("http", http)
}

struct HttpClient {
    client: awc::Client,
    user_agent: String,
}

impl UserData for HttpClient {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        for (name, method) in [
            ("get", awc::http::Method::GET),
            ("post", awc::http::Method::POST),
            ("put", awc::http::Method::PUT),
            ("patch", awc::http::Method::PATCH),
            ("delete", awc::http::Method::DELETE),
            ("head", awc::http::Method::HEAD),
        ] {
            methods.add_method(name, move |_, this, url: String| {
                Ok(Request {
                    client: this.client.clone(),
                    method: method.clone(),
                    url,
                    headers: vec![("User-Agent".into(), this.user_agent.clone())],
                    body: Bytes::new(),
                    timeout: None,
                })
            });
        }
        // KumoMTA's: nothing to release early here.
        methods.add_method("close", |_, _, ()| Ok(()));
    }
}

#[derive(Clone)]
struct Request {
    client: awc::Client,
    method: awc::http::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    timeout: Option<Duration>,
}

impl Request {
    fn set_header(&mut self, name: String, value: String) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value));
    }
}

/// A builder method: change the request, return the same userdata (so calls chain).
fn builder<A: mlua::FromLuaMulti + 'static>(
    methods: &mut impl UserDataMethods<Request>,
    name: &'static str,
    f: fn(&mut Request, A) -> mlua::Result<()>,
) {
    methods.add_function(name, move |_, (ud, args): (AnyUserData, A)| {
        f(&mut *ud.borrow_mut::<Request>()?, args)?;
        Ok(ud)
    });
}

impl UserData for Request {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        builder(methods, "header", |r, (name, value): (String, String)| {
            r.set_header(name, value);
            Ok(())
        });
        builder(methods, "basic_auth", |r, (user, password): (String, Option<String>)| {
            use base64::Engine;
            let pair = format!("{user}:{}", password.unwrap_or_default());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            r.set_header("Authorization".into(), format!("Basic {encoded}"));
            Ok(())
        });
        builder(methods, "bearer_auth", |r, token: String| {
            r.set_header("Authorization".into(), format!("Bearer {token}"));
            Ok(())
        });
        builder(methods, "body", |r, body: mlua::LuaString| {
            r.body = Bytes::copy_from_slice(&body.as_bytes());
            Ok(())
        });
        builder(methods, "timeout", |r, t: Value| {
            r.timeout = Some(TimeDelta::from_lua_arg(t)?.0);
            Ok(())
        });
        methods.add_async_function("send", |lua, ud: AnyUserData| async move {
            let request = ud.borrow::<Request>()?.clone();
            let paused = super::state::pause_deadline(&lua);
            let result = send(request).await;
            super::state::resume_deadline(&lua, paused);
            result.map_err(mlua::Error::runtime)
        });
    }
}

async fn send(r: Request) -> Result<Response, String> {
    let what = format!("{} {}", r.method, r.url);
    let mut request = r.client.request(r.method, r.url.as_str());
    for (name, value) in r.headers {
        request = request.insert_header((name, value));
    }
    if let Some(t) = r.timeout {
        request = request.timeout(t);
    }
    let mut response = request.send_body(r.body).await.map_err(|e| format!("{what}: {e}"))?;
    let body = response.body().limit(MAX_BODY).await.map_err(|e| format!("{what}: reading the body: {e}"))?;
    let status = response.status();
    Ok(Response {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("").to_string(),
        headers: response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body,
    })
}

struct Response {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl UserData for Response {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("status_code", |_, r, ()| Ok(r.status));
        methods.add_method("status_reason", |_, r, ()| Ok(r.reason.clone()));
        methods.add_method("status_is_informational", |_, r, ()| Ok((100..200).contains(&r.status)));
        methods.add_method("status_is_success", |_, r, ()| Ok((200..300).contains(&r.status)));
        methods.add_method("status_is_redirection", |_, r, ()| Ok((300..400).contains(&r.status)));
        methods.add_method("status_is_client_error", |_, r, ()| Ok((400..500).contains(&r.status)));
        methods.add_method("status_is_server_error", |_, r, ()| Ok((500..600).contains(&r.status)));
        methods.add_method("text", |_, r, ()| Ok(String::from_utf8_lossy(&r.body).into_owned()));
        methods.add_method("bytes", |lua, r, ()| lua.create_string(&r.body));
        methods.add_method("headers", |lua, r, ()| {
            let t = lua.create_table()?;
            for (k, v) in &r.headers {
                t.set(k.as_str(), v.as_str())?;
            }
            Ok(t)
        });
    }
}
