//! custom_lua delivery (SPEC §7.3) on the policy side. Each connection owns a Lua state of its
//! own, loaded from the policy, living on the delivery arbiter that runs the connection: the
//! constructor event builds the connection object once, and `send(message)` (or
//! `send_batch(messages)` with `batch_size > 1`) runs as async Lua, so `kumo.http` requests
//! wait without holding any shared policy state or thread.

use std::sync::Arc;

use mlua::{Function, Table, Value};

use super::error::PolicyError;
use super::http::HttpContext;
use super::kumo;
use super::lua_message::LuaMessage;
use super::state::{PolicyState, arm_deadline, disarm_deadline};
use crate::model::Message;
use crate::model::queue_name::QueueNameParts;

pub struct LuaConnection {
    state: PolicyState,
    constructor: String,
    object: Option<Table>,
}

impl LuaConnection {
    pub fn new(state: PolicyState, constructor: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        state.lua().set_app_data(HttpContext { tls });
        LuaConnection { state, constructor: constructor.to_string(), object: None }
    }

    /// Run `f`'s future with the handler deadline armed.
    async fn timed<R>(&self, f: impl Future<Output = mlua::Result<R>>) -> Result<R, PolicyError> {
        arm_deadline(self.state.lua(), self.state.handler_timeout());
        let r = f.await;
        disarm_deadline(self.state.lua());
        r.map_err(|e| PolicyError::from_lua(&e))
    }

    async fn object(&mut self, parts: &QueueNameParts) -> Result<Table, PolicyError> {
        if let Some(o) = &self.object {
            return Ok(o.clone());
        }
        let lua = self.state.lua();
        let handler = kumo::handlers(lua, &self.constructor)
            .map_err(|e| PolicyError::from_lua(&e))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                PolicyError::Lua(format!(
                    "no handler registered for constructor event '{}'",
                    self.constructor
                ))
            })?;
        let args = (parts.domain.clone(), parts.tenant.clone(), parts.campaign.clone());
        let made: Value = self.timed(handler.call_async(args)).await?;
        let Value::Table(object) = made else {
            return Err(PolicyError::Lua(format!(
                "constructor '{}' must return an object with a send method",
                self.constructor
            )));
        };
        self.object = Some(object.clone());
        Ok(object)
    }

    /// Any error but a plain 4xx forgets the object, so the next message constructs a new one.
    fn settle(&mut self, result: &Result<String, PolicyError>) {
        let keep = match result {
            Ok(_) => true,
            Err(PolicyError::Rejected { code, .. }) => *code != 421 && (400..500).contains(code),
            Err(_) => false,
        };
        if !keep {
            self.object = None;
        }
    }

    /// `send(message)`. `Ok(text)` is the disposition to log.
    pub async fn send(
        &mut self,
        parts: &QueueNameParts,
        msg: Message,
    ) -> (Message, Result<String, PolicyError>) {
        let (mut msgs, result) = self.call(parts, vec![msg], "send").await;
        (msgs.remove(0), result)
    }

    /// `send_batch(messages)`: one disposition for the whole batch.
    pub async fn send_batch(
        &mut self,
        parts: &QueueNameParts,
        msgs: Vec<Message>,
    ) -> (Vec<Message>, Result<String, PolicyError>) {
        self.call(parts, msgs, "send_batch").await
    }

    async fn call(
        &mut self,
        parts: &QueueNameParts,
        msgs: Vec<Message>,
        method: &str,
    ) -> (Vec<Message>, Result<String, PolicyError>) {
        let object = match self.object(parts).await {
            Ok(o) => o,
            Err(e) => return (msgs, Err(e)),
        };
        let lua = self.state.lua().clone();
        let ids: Vec<_> = msgs.iter().map(|m| m.id).collect();
        let uds: Vec<_> = msgs
            .into_iter()
            .map(|m| {
                let id = m.id;
                lua.create_userdata(LuaMessage(m))
                    .unwrap_or_else(|e| panic!("cannot create message userdata for {id}: {e}"))
            })
            .collect();
        let result = match object.get::<Option<Function>>(method) {
            Ok(Some(f)) => {
                let arg = if method == "send" {
                    Ok(Value::UserData(uds[0].clone()))
                } else {
                    lua.create_sequence_from(uds.iter().cloned()).map(Value::Table)
                };
                match arg {
                    Ok(arg) => self.timed(f.call_async::<Value>((object.clone(), arg))).await,
                    Err(e) => Err(PolicyError::from_lua(&e)),
                }
            }
            Ok(None) => Err(PolicyError::Lua(format!(
                "the object constructor '{}' returned has no {method} method{}",
                self.constructor,
                if method == "send_batch" { " (batch_size > 1 needs send_batch)" } else { "" }
            ))),
            Err(e) => Err(PolicyError::from_lua(&e)),
        };
        let result = result.map(|v| match v {
            Value::String(s) => s.to_string_lossy(),
            Value::Nil => String::new(),
            other => other.to_string().unwrap_or_default(),
        });
        self.settle(&result);
        let msgs = uds
            .into_iter()
            .zip(ids)
            .map(|(ud, id)| match ud.take::<LuaMessage>() {
                Ok(LuaMessage(m)) => m,
                Err(e) => panic!("message userdata {id} could not be taken back: {e}"),
            })
            .collect();
        (msgs, result)
    }
}
