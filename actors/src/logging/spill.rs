//! The bytes of an open segment on their way to its file.
//!
//! The encoder (zstd, or none) writes into a [`Spill`], which only appends to memory, so the
//! encoder never sees an I/O error and its stream stays consistent whatever the disk does.
//! [`Spill::persist`] then moves what it can to the file and keeps the rest: after ENOSPC the
//! file holds a clean prefix of the stream, and the next successful persist continues it in the
//! same file. That is what lets a full disk delay records instead of losing them, without a new
//! segment per failed flush.

use std::io::{self, Write};

/// Above this many pending bytes a write also tries to persist, so a busy writer does not hold a
/// whole drain's worth of records before its flush (as a `BufWriter` would not).
const EAGER_PERSIST: usize = 64 << 10;

#[derive(Debug)]
pub(super) struct Spill<W> {
    file: W,
    /// Encoded bytes not yet accepted by `file`, in order.
    pending: Vec<u8>,
    /// The last persist failed; eager persists wait for the writer's next retry.
    failing: bool,
}

impl<W: Write> Spill<W> {
    pub(super) fn new(file: W) -> Self {
        Spill { file, pending: Vec::new(), failing: false }
    }

    /// Write every pending byte to the file. On error the bytes the file did take are dropped
    /// from memory, the rest stay for the next call.
    pub(super) fn persist(&mut self) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            if done == self.pending.len() {
                break self.file.flush();
            }
            match self.file.write(&self.pending[done..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.pending.drain(..done);
        self.failing = result.is_err();
        result
    }

    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    pub(super) fn failing(&self) -> bool {
        self.failing
    }

    /// The file, for a final sync; anything still pending is discarded.
    pub(super) fn into_file(self) -> W {
        self.file
    }

    #[cfg(test)]
    pub(super) fn file_mut(&mut self) -> &mut W {
        &mut self.file
    }
}

impl<W: Write> Write for Spill<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if !self.failing && self.pending.len() >= EAGER_PERSIST {
            // An error is remembered in `failing` and reported by the writer's own persist.
            let _ = self.persist();
        }
        Ok(buf.len())
    }

    /// Nothing: persisting is the writer's explicit step, so the encoder never sees an error.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk with `room` bytes left: takes what fits, then answers ENOSPC.
    struct Disk {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room);
            self.data.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_keeps_the_tail_and_the_retry_continues_the_same_stream() {
        let mut s = Spill::new(Disk { data: Vec::new(), room: 5 });
        s.write_all(b"hello world").unwrap();
        let err = s.persist().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(s.failing());
        assert_eq!(s.file_mut().data, b"hello", "the file holds a clean prefix");
        assert_eq!(s.pending(), 6);
        // Still full: nothing moves, nothing is lost, more can queue behind it.
        assert!(s.persist().is_err());
        s.write_all(b"!").unwrap();
        assert_eq!(s.pending(), 7);
        s.file_mut().room = 100;
        s.persist().unwrap();
        assert!(!s.failing());
        assert_eq!(s.pending(), 0);
        assert_eq!(s.file_mut().data, b"hello world!");
    }

    #[test]
    fn large_writes_persist_eagerly_unless_failing() {
        let mut s = Spill::new(Disk { data: Vec::new(), room: usize::MAX });
        s.write_all(&vec![b'a'; EAGER_PERSIST]).unwrap();
        assert_eq!((s.pending(), s.file_mut().data.len()), (0, EAGER_PERSIST));

        s.file_mut().room = 0;
        s.write_all(&vec![b'b'; EAGER_PERSIST]).unwrap();
        assert!(s.failing());
        // While failing, writes only queue: no write call per record against a full disk.
        s.file_mut().room = usize::MAX;
        s.write_all(&vec![b'c'; EAGER_PERSIST]).unwrap();
        assert_eq!(s.pending(), 2 * EAGER_PERSIST);
        s.persist().unwrap();
        assert_eq!(s.file_mut().data.len(), 3 * EAGER_PERSIST);
    }
}
