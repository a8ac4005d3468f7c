//! Splitting the command stream into lines. Input arrives in arbitrary pieces (pipelining, slow
//! clients); a line is complete at LF (a preceding CR is stripped; bare LF is tolerated in
//! commands). A line longer than the limit is reported once and skipped up to its LF.

use bytes::{Buf, BytesMut};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
pub const MAX_COMMAND_LINE: usize = 512;

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Command(BytesMut),
    TooLong,
}

#[derive(Debug, Default)]
pub struct LineReader {
    /// Skipping the rest of an over-long line.
    discarding: bool,
}

impl LineReader {
    /// Take the next complete line from `buf`, or None if more input is needed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Option<Line> {
        loop {
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    if self.discarding {
                        buf.advance(i + 1);
                        self.discarding = false;
                        continue;
                    }
                    let mut line = buf.split_to(i + 1);
                    if line.len() > MAX_COMMAND_LINE {
                        return Some(Line::TooLong);
                    }
                    line.truncate(i);
                    if line.last() == Some(&b'\r') {
                        line.truncate(i - 1);
                    }
                    return Some(Line::Command(line));
                }
                None if buf.len() > MAX_COMMAND_LINE => {
                    buf.clear();
                    if self.discarding {
                        return None;
                    }
                    self.discarding = true;
                    return Some(Line::TooLong);
                }
                None => {
                    if self.discarding {
                        buf.clear();
                    }
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<Line> {
        let mut reader = LineReader::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            while let Some(line) = reader.next(&mut buf) {
                out.push(line);
            }
        }
        out
    }

    fn cmd(s: &str) -> Line {
        Line::Command(BytesMut::from(s))
    }

    /// Pipelined input split at every byte boundary yields the same lines.
    #[test]
    fn every_split_point_gives_the_same_lines() {
        let input = b"EHLO a\r\nMAIL FROM:<x@y.z>\r\nRCPT TO:<r@y.z>\nDATA\r\n";
        let want = vec![cmd("EHLO a"), cmd("MAIL FROM:<x@y.z>"), cmd("RCPT TO:<r@y.z>"), cmd("DATA")];
        for i in 0..=input.len() {
            for j in i..=input.len() {
                assert_eq!(collect(&[&input[..i], &input[i..j], &input[j..]]), want, "split {i},{j}");
            }
        }
    }

    #[test]
    fn over_long_line_is_reported_once_and_skipped() {
        let long = vec![b'A'; 2000];
        let out = collect(&[&long[..700], &long[700..], b"\r\nNOOP\r\n"]);
        assert_eq!(out, vec![Line::TooLong, cmd("NOOP")]);
        let mut exact = vec![b'B'; MAX_COMMAND_LINE - 2];
        exact.extend_from_slice(b"\r\n");
        assert!(matches!(&collect(&[&exact])[..], [Line::Command(_)]));
        let mut over = vec![b'B'; MAX_COMMAND_LINE - 1];
        over.extend_from_slice(b"\r\nQUIT\r\n");
        assert_eq!(collect(&[&over]), vec![Line::TooLong, cmd("QUIT")]);
    }
}
