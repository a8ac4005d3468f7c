//! Reading the DATA section (RFC 5321 §4.1.1.4, §4.5.2). Pure and incremental: feed it whatever
//! bytes arrived and it reports how many it consumed and whether the message has ended, so bytes
//! pipelined after the terminator stay in the caller's buffer for the next command.
//!
//! Only `CRLF . CRLF` ends the message. A bare LF is content, never a line end: `LF . LF` must not
//! terminate, or a downstream server that reads lines differently could be fed a smuggled message.

/// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF.
pub const MAX_TEXT_LINE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutcome {
    /// The message, dot-unstuffed, with its final CRLF.
    Complete(Vec<u8>),
    /// Larger than the limit; the body was discarded.
    TooBig,
    /// A line exceeded MAX_TEXT_LINE; the body was discarded.
    LineTooLong,
}

#[derive(Debug)]
pub struct DataReader {
    body: Vec<u8>,
    /// Index in `body` where the current line starts (meaningful while not discarding).
    line_start: usize,
    /// Length of the current line so far, including bytes no longer kept.
    line_len: usize,
    /// The current line's first three bytes, enough to recognise `.` CRLF.
    head: [u8; 3],
    /// The last byte seen was CR (a CRLF may be split across two reads).
    prev_cr: bool,
    max_size: usize,
    too_big: bool,
    line_too_long: bool,
}

impl DataReader {
    pub fn new(max_size: usize) -> Self {
        Self {
            body: Vec::with_capacity(max_size.min(64 * 1024)),
            line_start: 0,
            line_len: 0,
            head: [0; 3],
            prev_cr: false,
            max_size,
            too_big: false,
            line_too_long: false,
        }
    }

    fn discarding(&self) -> bool {
        self.too_big || self.line_too_long
    }

    /// Consume input; returns (bytes consumed, Some(outcome) once the terminator was seen).
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<DataOutcome>) {
        let mut pos = 0;
        while pos < input.len() {
            let end = input[pos..].iter().position(|b| *b == b'\n').map_or(input.len(), |i| pos + i + 1);
            let segment = &input[pos..end];
            pos = end;
            for (k, b) in segment.iter().take(3usize.saturating_sub(self.line_len)).enumerate() {
                self.head[self.line_len + k] = *b;
            }
            self.line_len += segment.len();
            if !self.discarding() {
                self.body.extend_from_slice(segment);
            }
            let ends_crlf = segment.ends_with(b"\r\n") || (segment == b"\n" && self.prev_cr);
            self.prev_cr = segment.last() == Some(&b'\r');
            if !ends_crlf {
                // Mid-line, or a bare LF (content, not a line end). Cap what one line may hold.
                if self.line_len > MAX_TEXT_LINE && !self.line_too_long {
                    self.line_too_long = true;
                    self.body = Vec::new();
                }
                continue;
            }
            if self.line_len == 3 && &self.head == b".\r\n" {
                if !self.discarding() {
                    self.body.truncate(self.body.len() - 3);
                }
                return (pos, Some(self.finish()));
            }
            if self.line_len > MAX_TEXT_LINE {
                self.line_too_long = true;
            }
            if !self.discarding() {
                if self.head[0] == b'.' {
                    self.body.remove(self.line_start);
                }
                if self.body.len() > self.max_size {
                    self.too_big = true;
                }
            }
            if self.discarding() {
                self.body = Vec::new();
            }
            self.line_start = self.body.len();
            self.line_len = 0;
        }
        (pos, None)
    }

    fn finish(&mut self) -> DataOutcome {
        if self.line_too_long {
            DataOutcome::LineTooLong
        } else if self.too_big {
            DataOutcome::TooBig
        } else {
            DataOutcome::Complete(std::mem::take(&mut self.body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]], max: usize) -> (Option<DataOutcome>, Vec<u8>) {
        let mut r = DataReader::new(max);
        let mut rest = Vec::new();
        let mut outcome = None;
        for c in chunks {
            if outcome.is_some() {
                rest.extend_from_slice(c);
                continue;
            }
            let (used, done) = r.feed(c);
            if done.is_some() {
                outcome = done;
                rest.extend_from_slice(&c[used..]);
            } else {
                assert_eq!(used, c.len());
            }
        }
        (outcome, rest)
    }

    #[test]
    fn dot_unstuffing_and_terminator_at_every_split() {
        let input = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n";
        let want = b"Subject: x\r\n\r\n.leading dot\r\n".to_vec();
        for i in 0..=input.len() {
            let (out, rest) = read_all(&[&input[..i], &input[i..]], 1 << 20);
            assert_eq!(out, Some(DataOutcome::Complete(want.clone())), "split at {i}");
            assert_eq!(rest, b"QUIT\r\n", "split at {i}");
        }
    }

    #[test]
    fn empty_message() {
        assert_eq!(read_all(&[b".\r\n"], 100).0, Some(DataOutcome::Complete(vec![])));
    }

    #[test]
    fn bare_lf_never_terminates() {
        let (out, _) = read_all(&[b"a\n.\nb\r\n", b".\r\n"], 1000);
        assert_eq!(out, Some(DataOutcome::Complete(b"a\n.\nb\r\n".to_vec())));
        let (out, _) = read_all(&[b"a\r\n.\nstill data\r\n.\r\n"], 1000);
        // CRLF delimits lines, so ".\nstill data" is one line that starts with a dot: unstuffed.
        assert_eq!(out, Some(DataOutcome::Complete(b"a\r\n\nstill data\r\n".to_vec())));
    }

    #[test]
    fn binary_and_nul_bytes_are_kept() {
        let (out, _) = read_all(&[b"\x00\xff\x01bin\r\n.\r\n"], 1000);
        assert_eq!(out, Some(DataOutcome::Complete(b"\x00\xff\x01bin\r\n".to_vec())));
    }

    #[test]
    fn over_long_text_line_is_refused_after_the_terminator() {
        let mut msg = vec![b'x'; MAX_TEXT_LINE - 1];
        msg.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        let (out, rest) = read_all(&[&msg[..300], &msg[300..]], 1 << 20);
        assert_eq!(out, Some(DataOutcome::LineTooLong));
        assert_eq!(rest, b"NOOP\r\n");
        let mut ok = vec![b'x'; MAX_TEXT_LINE - 2];
        ok.extend_from_slice(b"\r\n.\r\n");
        assert!(matches!(read_all(&[&ok], 1 << 20).0, Some(DataOutcome::Complete(_))));
    }

    #[test]
    fn oversize_message_is_discarded_but_the_stream_stays_in_sync() {
        let mut msg = Vec::new();
        for _ in 0..100 {
            msg.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
        }
        msg.extend_from_slice(b".\r\nRSET\r\n");
        let (out, rest) = read_all(&[&msg], 1000);
        assert_eq!(out, Some(DataOutcome::TooBig));
        assert_eq!(rest, b"RSET\r\n");
        let (out, _) = read_all(&[&msg], 100_000);
        assert!(matches!(out, Some(DataOutcome::Complete(b)) if b.len() == 4200));
    }

    #[test]
    fn huge_line_without_crlf_does_not_grow_memory() {
        let mut r = DataReader::new(1000);
        for _ in 0..1000 {
            r.feed(&[b'z'; 4096]);
            assert!(r.body.len() <= MAX_TEXT_LINE + 4096);
        }
        assert!(matches!(r.feed(b"\r\n.\r\n").1, Some(DataOutcome::LineTooLong | DataOutcome::TooBig)));
    }
}
