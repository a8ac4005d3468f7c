//! The `requeue_message` event (SPEC §3.2, §3.3): handlers see the message, the one-line SMTP
//! response, the insert context as an array of strings, whether attempts will be incremented, and
//! the suggested delay as a TimeDelta (or nil).

use std::time::Duration;

use mlua::{IntoLua, MultiValue};

use super::error::PolicyError;
use super::state::PolicyState;
use super::time_delta::TimeDelta;
use crate::model::Message;
use crate::model::retry::Backoff;

/// The event's arguments after the message.
#[derive(Debug, Clone)]
pub struct RequeueArgs {
    pub smtp_response: String,
    pub insert_context: Vec<String>,
    pub increment_attempts: bool,
    pub delay: Option<Duration>,
    /// The current queue's retry settings, for `kumo.xfer.xfer_in_requeue`.
    pub backoff: Option<Backoff>,
}

/// An AdminRebind a handler asked for (`xfer_in_requeue(..., reason)`); the engine logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebindNote {
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// Per-call context for the `kumo.xfer` functions, installed for every message event.
pub(crate) struct RequeueScope {
    pub backoff: Option<Backoff>,
    pub notes: Vec<RebindNote>,
}

impl PolicyState {
    /// Run the `requeue_message` chain. The message comes back with whatever the handlers changed;
    /// on error the caller restores its snapshot (SPEC §3.4 rule 4).
    pub fn requeue_message(
        &self,
        msg: Message,
        args: &RequeueArgs,
    ) -> (Message, Result<(), PolicyError>, Vec<RebindNote>) {
        self.run_message_chain_noting("requeue_message", msg, args.backoff, |lua| {
            let ctx = lua.create_sequence_from(args.insert_context.iter().map(String::as_str))?;
            let delay = match args.delay {
                Some(d) => TimeDelta(d).into_lua(lua)?,
                None => mlua::Value::Nil,
            };
            Ok(MultiValue::from_vec(vec![
                args.smtp_response.as_str().into_lua(lua)?,
                mlua::Value::Table(ctx),
                mlua::Value::Boolean(args.increment_attempts),
                delay,
            ]))
        })
    }
}
