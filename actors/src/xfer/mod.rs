//! Moving queued messages between nodes (SPEC §4). This module so far holds the wire codec;
//! the receiver, the XferSupervisor and its XferTarget actors are the next step (issue #5).

pub mod codec;
pub mod inject;
