//! `xfer_message_received(msg, auth_info)` (SPEC §4.8): a Single event on the receiving node,
//! after `restore_info` and before the save; it may rewrite meta, e.g. to route locally.

use mlua::MultiValue;

use super::convert::json_to_lua;
use super::error::PolicyError;
use super::state::PolicyState;
use crate::model::Message;

impl PolicyState {
    pub fn xfer_message_received(
        &self,
        msg: Message,
        auth_info: &serde_json::Value,
    ) -> (Message, Result<(), PolicyError>, Vec<super::requeue::RebindNote>) {
        self.run_with_auth_info("xfer_message_received", msg, auth_info)
    }

    /// `http_message_generated(msg, auth_info)`: a message made by `POST /api/inject/v1`, before
    /// it is spooled; the same message object as `smtp_server_message_received` sees.
    pub fn http_message_generated(
        &self,
        msg: Message,
        auth_info: &serde_json::Value,
    ) -> (Message, Result<(), PolicyError>, Vec<super::requeue::RebindNote>) {
        self.run_with_auth_info("http_message_generated", msg, auth_info)
    }

    /// A reception event whose handlers get `(msg, auth_info)`.
    fn run_with_auth_info(
        &self,
        event: &str,
        msg: Message,
        auth_info: &serde_json::Value,
    ) -> (Message, Result<(), PolicyError>, Vec<super::requeue::RebindNote>) {
        self.run_message_chain_noting(event, msg, None, |lua| {
            Ok(MultiValue::from_vec(vec![json_to_lua(lua, auth_info)?]))
        })
    }
}

impl PolicyState {
    /// `rebind_message(msg, data)` (SPEC §5, admin rebind with `trigger_rebind_event`): a Single
    /// event; without a handler it is an error and the message stays as it was.
    pub fn rebind_message(
        &self,
        msg: Message,
        data: &serde_json::Value,
    ) -> (Message, Result<(), PolicyError>, Vec<super::requeue::RebindNote>) {
        if !self.registered_events().iter().any(|e| e == "rebind_message") {
            let err = PolicyError::Lua("no rebind_message handler is registered".into());
            return (msg, Err(err), Vec::new());
        }
        self.run_message_chain_noting("rebind_message", msg, None, |lua| {
            Ok(MultiValue::from_vec(vec![json_to_lua(lua, data)?]))
        })
    }
}

/// `kumo.xfer.{xfer_in_requeue, xfer, cancel_xfer, get_xfer_target}` (SPEC §4.7).
pub(crate) fn install(lua: &mlua::Lua, kumo_table: &mlua::Table) -> mlua::Result<()> {
    use chrono::Utc;
    use mlua::{AnyUserData, Value};

    use super::kumo::runtime_error;
    use super::lua_message::LuaMessage;
    use super::requeue::{RebindNote, RequeueScope};
    use super::time_delta::TimeDelta;
    use crate::model::queue_config::QueueConfig;
    use crate::model::retry;
    use crate::model::xfer::{is_xfer_queue, queue_for_target, restore_info, save_info, target_of_queue};

    fn note(lua: &mlua::Lua, from: String, to: &str, reason: Option<String>) {
        if let (Some(reason), Some(mut scope)) = (reason, lua.app_data_mut::<RequeueScope>()) {
            scope.notes.push(RebindNote { from, to: to.to_string(), reason });
        }
    }

    /// SPEC §4.7 steps shared by `xfer_in_requeue` and `xfer`: nothing if already targeted at
    /// `url`; otherwise leave any other xfer queue (restore_info), let `reschedule` set the next
    /// due time, save the queue info and point the message at the target's xfer queue.
    fn retarget(
        lua: &mlua::Lua,
        ud: &AnyUserData,
        url: &str,
        reason: Option<String>,
        reschedule: impl FnOnce(&mut crate::model::Message, chrono::DateTime<Utc>) -> mlua::Result<()>,
    ) -> mlua::Result<()> {
        let xferq = queue_for_target(url).map_err(|e| runtime_error(lua, e))?;
        let mut m = ud.borrow_mut::<LuaMessage>()?;
        let msg = &mut m.0;
        let current = msg.queue_name().map_err(|e| runtime_error(lua, e))?;
        if current == xferq {
            return Ok(());
        }
        let now = Utc::now();
        if is_xfer_queue(&current) {
            restore_info(msg, now).map_err(|e| runtime_error(lua, e))?;
        }
        reschedule(msg, now)?;
        let from = msg.queue_name().unwrap_or(current);
        save_info(msg);
        msg.set_meta("queue", serde_json::Value::String(xferq.clone()));
        note(lua, from, &xferq, reason);
        Ok(())
    }

    let table = lua.create_table()?;
    table.set(
        "xfer_in_requeue",
        lua.create_function(
            |lua,
             (ud, url, _ctx, increment, delay, reason): (
                AnyUserData,
                String,
                Value,
                bool,
                Value,
                Option<String>,
            )| {
                retarget(lua, &ud, &url, reason, |msg, now| {
                    // Step 3: the next schedule, computed before saving, with no expiry check.
                    let due = if increment {
                        let backoff = lua
                            .app_data_ref::<RequeueScope>()
                            .and_then(|s| s.backoff)
                            .unwrap_or_else(|| QueueConfig::default().backoff());
                        let due = retry::next_due_unchecked(
                            now,
                            msg.num_attempts,
                            &backoff,
                            msg.schedule.as_ref(),
                            rand::random(),
                        );
                        msg.num_attempts = msg.num_attempts.saturating_add(1);
                        due
                    } else {
                        let delay = match delay {
                            Value::Nil => None,
                            v => Some(TimeDelta::from_lua_arg(v)?.0),
                        };
                        retry::next_due_without_increment(now, delay, msg.schedule.as_ref(), rand::random())
                    };
                    msg.due = Some(due);
                    Ok(())
                })
            },
        )?,
    )?;
    table.set(
        "xfer",
        lua.create_function(|lua, (ud, url, reason): (AnyUserData, String, Option<String>)| {
            // Scheduling is left alone: the current due is what gets saved.
            retarget(lua, &ud, &url, reason, |_, _| Ok(()))
        })?,
    )?;
    table.set(
        "cancel_xfer",
        lua.create_function(|lua, (ud, reason): (AnyUserData, Option<String>)| {
            let mut m = ud.borrow_mut::<LuaMessage>()?;
            let msg = &mut m.0;
            let current = msg.queue_name().map_err(|e| runtime_error(lua, e))?;
            if !is_xfer_queue(&current) {
                return Ok(());
            }
            restore_info(msg, Utc::now()).map_err(|e| runtime_error(lua, e))?;
            let to = msg.queue_name().map_err(|e| runtime_error(lua, e))?;
            note(lua, current, &to, reason);
            Ok(())
        })?,
    )?;
    table.set(
        "get_xfer_target",
        lua.create_function(|_, ud: AnyUserData| {
            let m = ud.borrow::<LuaMessage>()?;
            Ok(m.0.queue_name().ok().and_then(|q| target_of_queue(&q)))
        })?,
    )?;
    kumo_table.set("xfer", table)
}
