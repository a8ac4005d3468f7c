//! Moving queued messages between nodes (SPEC §4): the wire codec, the receiving endpoint's
//! logic, the XferSupervisor with one XferTarget actor per peer, and the admin transitions.

pub mod admin;
pub mod codec;
pub mod inject;
mod sender;
mod supervisor;

pub use supervisor::{AttachXfer, Transfer, XferSupervisor, XferTarget};
