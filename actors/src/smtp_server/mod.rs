//! The ESMTP listener: protocol parsing (pure: `command`, `line`, `data`) kept apart from the
//! per-connection session and the reception pipeline that acts on complete messages.

pub mod command;
pub mod data;
pub mod line;
pub mod listener;
pub mod reception;
mod reports;
pub mod session;
pub mod stream;
mod trace;

pub use reception::{Connection, Reception, Reply};
pub use session::{Session, SessionSettings};
