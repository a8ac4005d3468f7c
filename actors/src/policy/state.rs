//! One Lua state with the policy loaded. Lives on one policy thread for its whole life.

use mlua::{Lua, MultiValue};

use super::error::PolicyError;
use super::kumo::{self, Loading};
use super::lua_message::LuaMessage;
use super::requeue::{RebindNote, RequeueScope};
use crate::model::Message;
use crate::model::retry::Backoff;
use ferry_config::PolicySource;

pub struct PolicyState {
    lua: Lua,
    handler_timeout: std::time::Duration,
}

/// When the running handler must have finished; checked by an instruction-count hook.
struct Deadline(std::time::Instant);

/// Instructions between deadline checks: cheap, yet a runaway loop is caught within microseconds.
const HOOK_EVERY: u32 = 10_000;

/// Arm the handler deadline for an async call (the sync paths use [`PolicyState::with_deadline`]).
pub(crate) fn arm_deadline(lua: &Lua, timeout: std::time::Duration) {
    lua.set_app_data(Deadline(std::time::Instant::now() + timeout));
}

pub(crate) fn disarm_deadline(lua: &Lua) {
    lua.remove_app_data::<Deadline>();
}

/// Stop the clock while a handler waits on I/O (an HTTP request): the deadline bounds the time
/// Lua runs, not the time a webhook takes. Returns what [`resume_deadline`] needs.
pub(crate) fn pause_deadline(lua: &Lua) -> Option<(std::time::Instant, std::time::Instant)> {
    lua.remove_app_data::<Deadline>().map(|d| (d.0, std::time::Instant::now()))
}

pub(crate) fn resume_deadline(lua: &Lua, paused: Option<(std::time::Instant, std::time::Instant)>) {
    if let Some((deadline, since)) = paused {
        lua.set_app_data(Deadline(deadline + since.elapsed()));
    }
}

/// Has the running handler's deadline passed?
fn expired(lua: &Lua) -> bool {
    lua.app_data_ref::<Deadline>().is_some_and(|d| std::time::Instant::now() > d.0)
}

/// The hook's error is an ordinary Lua error, so `while true do pcall(f) end` would catch it
/// forever and hold the state. Once the deadline has passed, the catchers pass any error on.
const GUARD_CATCHERS: &str = r#"
local expired = ...
local pcall, xpcall, resume = pcall, xpcall, coroutine.resume
local pack, unpack, error = table.pack, table.unpack, error
local function pass(r)
  if not r[1] and expired() then error(r[2], 0) end
  return unpack(r, 1, r.n)
end
_G.pcall = function(...) return pass(pack(pcall(...))) end
_G.xpcall = function(...) return pass(pack(xpcall(...))) end
coroutine.resume = function(...) return pass(pack(resume(...))) end
"#;

fn guard_catchers(lua: &Lua) -> mlua::Result<()> {
    let expired = lua.create_function(|lua, ()| Ok(expired(lua)))?;
    lua.load(GUARD_CATCHERS).set_name("=ferry.guard_catchers").call::<()>(expired)
}

impl PolicyState {
    /// Create a state and run the policy file in it. Errors name the file and line.
    pub fn load(source: Option<&PolicySource>) -> Result<PolicyState, PolicyError> {
        Self::load_with_timeout(source, std::time::Duration::from_secs(5))
    }

    /// Like [`load`](Self::load), with a limit on how long one event handler may run.
    pub fn load_with_timeout(
        source: Option<&PolicySource>,
        handler_timeout: std::time::Duration,
    ) -> Result<PolicyState, PolicyError> {
        let lua = Lua::new();
        // Global, so coroutines the policy creates are watched too.
        lua.set_global_hook(mlua::HookTriggers::new().every_nth_instruction(HOOK_EVERY), |lua, _| {
            if expired(lua) {
                Err(mlua::Error::runtime("handler exceeded its time limit (policy.handler_timeout)"))
            } else {
                Ok(mlua::VmState::Continue)
            }
        })
        .map_err(|e| PolicyError::Load(e.to_string()))?;
        kumo::install(&lua).map_err(|e| PolicyError::Load(e.to_string()))?;
        guard_catchers(&lua).map_err(|e| PolicyError::Load(e.to_string()))?;
        if let Some(source) = source {
            let (name, text) = match source {
                PolicySource::File(path) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| PolicyError::Load(format!("cannot read {}: {e}", path.display())))?;
                    (path.display().to_string(), text)
                }
                PolicySource::Embedded { name, text } => (name.to_string(), text.to_string()),
            };
            lua.set_app_data(Loading);
            let result = lua.load(text).set_name(format!("@{name}")).exec();
            lua.remove_app_data::<Loading>();
            result.map_err(|e| match PolicyError::from_lua(&e) {
                PolicyError::Lua(m) => PolicyError::Load(m),
                other => PolicyError::Load(other.to_string()),
            })?;
        }
        Ok(PolicyState { lua, handler_timeout })
    }

    pub fn handler_timeout(&self) -> std::time::Duration {
        self.handler_timeout
    }

    /// Run `f` with the handler time limit armed.
    pub fn with_deadline<R>(&self, f: impl FnOnce() -> R) -> R {
        self.lua.set_app_data(Deadline(std::time::Instant::now() + self.handler_timeout));
        let r = f();
        self.lua.remove_app_data::<Deadline>();
        r
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// The `init` event: its handlers, in order, each with the handler time limit. Runs once per
    /// process, on one state, before any listener opens: it configures the node (the bounce
    /// classifier, ...), not the Lua state it happens to run in.
    pub fn run_init(&self) -> Result<(), PolicyError> {
        let handlers = kumo::handlers(&self.lua, "init").map_err(|e| PolicyError::from_lua(&e))?;
        for handler in handlers {
            self.with_deadline(|| handler.call::<()>(())).map_err(|e| PolicyError::from_lua(&e))?;
        }
        Ok(())
    }

    pub fn registered_events(&self) -> Vec<String> {
        kumo::registered_events(&self.lua).unwrap_or_default()
    }

    /// Run a Multiple event's handler chain over a message (SPEC §3.3): a handler that returns
    /// nothing lets the chain continue; any returned value, explicit nil included, stops it.
    /// The message comes back whatever happened, with the changes handlers made before any error.
    pub fn run_message_chain(
        &self,
        event: &str,
        msg: Message,
        extra: impl Fn(&Lua) -> mlua::Result<MultiValue>,
    ) -> (Message, Result<(), PolicyError>) {
        let (msg, result, _) = self.run_message_chain_noting(event, msg, None, extra);
        (msg, result)
    }

    /// [`run_message_chain`](Self::run_message_chain), also returning the AdminRebind records
    /// handlers asked for (`kumo.xfer.xfer(msg, url, reason)` …), which the caller logs once the
    /// message's new queue is saved. `backoff` is the current queue's retry settings, which
    /// `xfer_in_requeue` needs.
    pub fn run_message_chain_noting(
        &self,
        event: &str,
        msg: Message,
        backoff: Option<Backoff>,
        extra: impl Fn(&Lua) -> mlua::Result<MultiValue>,
    ) -> (Message, Result<(), PolicyError>, Vec<RebindNote>) {
        self.lua.set_app_data(RequeueScope { backoff, notes: Vec::new() });
        let (msg, result) = self.run_chain(event, msg, extra);
        let notes = self.lua.remove_app_data::<RequeueScope>().map(|s| s.notes).unwrap_or_default();
        (msg, result, notes)
    }

    fn run_chain(
        &self,
        event: &str,
        msg: Message,
        extra: impl Fn(&Lua) -> mlua::Result<MultiValue>,
    ) -> (Message, Result<(), PolicyError>) {
        let (msg, result) = self.run_chain_returning(event, msg, extra);
        (msg, result.map(|_| ()))
    }

    /// A Multiple event's chain over a message, with the first value of the return that stopped
    /// it (`None`: every handler returned nothing, or there is none).
    pub fn run_chain_returning(
        &self,
        event: &str,
        msg: Message,
        extra: impl Fn(&Lua) -> mlua::Result<MultiValue>,
    ) -> (Message, Result<Option<mlua::Value>, PolicyError>) {
        let handlers = match kumo::handlers(&self.lua, event) {
            Ok(h) => h,
            Err(e) => return (msg, Err(PolicyError::from_lua(&e))),
        };
        if handlers.is_empty() {
            return (msg, Ok(None));
        }
        let id = msg.id;
        let ud = match self.lua.create_userdata(LuaMessage(msg)) {
            Ok(ud) => ud,
            Err(e) => panic!("cannot create message userdata for {id}: {e}"),
        };
        let mut outcome = Ok(None);
        let _armed = self.lua.set_app_data(Deadline(std::time::Instant::now() + self.handler_timeout));
        for handler in handlers {
            let args = extra(&self.lua).map(|mut rest| {
                rest.push_front(mlua::Value::UserData(ud.clone()));
                rest
            });
            let result = args.and_then(|args| handler.call::<MultiValue>(args));
            match result {
                Ok(returned) if returned.is_empty() => continue,
                Ok(mut returned) => {
                    outcome = Ok(returned.pop_front());
                    break;
                }
                Err(e) => {
                    outcome = Err(PolicyError::from_lua(&e));
                    break;
                }
            }
        }
        self.lua.remove_app_data::<Deadline>();
        match ud.take::<LuaMessage>() {
            Ok(LuaMessage(msg)) => (msg, outcome),
            Err(e) => panic!("message userdata {id} could not be taken back: {e}"),
        }
    }
}
