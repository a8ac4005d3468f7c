//! The operator's Lua policy. [`PolicyPool`] is the LuaPolicy actor: a few OS threads, each owning
//! its own Lua state loaded from the policy file, taking jobs from one shared mailbox. Lua never
//! runs on an async arbiter and a slow handler stalls one state, not the engine.

mod address_header;
mod bounce;
mod convert;
pub mod custom_lua;
mod dkim;
mod egress;
mod error;
pub mod http;
pub mod kumo;
pub mod listener_domain;
mod log_hook;
pub mod lua_message;
mod lua_message_headers;
mod memoize;
mod pool;
pub mod queue_config;
mod redis;
pub mod requeue;
mod secrets;
pub mod smtp_events;
mod state;
mod throttle;
pub mod time_delta;
mod xfer;

pub use error::PolicyError;
pub use pool::{Lane, PolicyPool};
pub use requeue::RebindNote;
pub use state::PolicyState;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_message_api;
#[cfg(test)]
mod tests_runaway;
