//! ferry-config: the TOML schema, its defaults and its validation.
//!
//! Pure: reads files and text, knows nothing of actors or Lua. Every error names the file, the line
//! and the key at fault, because an operator staring at a failed start needs nothing less.

pub mod cidr;
pub mod duration;
mod error;
pub mod keys;
mod schema;
pub mod size;

pub use cidr::Cidr;
pub use duration::{HumanDuration, format_duration, parse_duration};
pub use error::ConfigError;
pub use schema::*;
pub use size::ByteSize;

#[cfg(test)]
mod tests;
