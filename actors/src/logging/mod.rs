//! Local log records: JSON objects, one per line, appended to time-named segment files
//! (SPEC §6 "Files").
//!
//! * [`segment_writer`] owns the writing side: a dedicated thread that appends lines to the
//!   current segment and rotates it by size, age and at shutdown.
//! * [`segment_reader`] decodes segments (finished or still open) for `ferry logs` and tests.
//!
//! A segment is *complete* once its write permission bits are cleared; until then readers must
//! expect a partial zstd frame at the end.

pub mod classify;
mod logger;
pub mod segment_reader;
pub mod segment_writer;
pub mod selection;
mod spill;

pub use logger::Logger;
pub use segment_reader::{for_each_line, is_complete, list_segments, read_segment_lines};
pub use segment_writer::{Compression, LogWriterHandle, SegmentConfig};
