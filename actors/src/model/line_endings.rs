//! Line endings in message data, both ways across the SMTP edge.
//!
//! SMTP smuggling: a receiver that treats a bare LF (or bare CR) as a line end reads
//! `hello LF . CRLF` as the end of the message and whatever follows as a second, attacker-addressed
//! one. Ferry never lets such bytes cross: reception refuses or repairs them
//! (`[smtp] invalid_line_endings`), and delivery writes every message through
//! [`smtp_data_payload`], whose output has CRLF line ends only and dot-stuffed lines, whatever the
//! spool holds (old spools, xfer from other nodes, Lua `set_data`).

use std::borrow::Cow;

/// A line ending that is not CRLF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareEnding {
    /// LF not preceded by CR.
    Lf,
    /// CR not followed by LF.
    Cr,
}

impl BareEnding {
    pub fn name(self) -> &'static str {
        match self {
            BareEnding::Lf => "bare LF",
            BareEnding::Cr => "bare CR",
        }
    }
}

/// The first bare LF or bare CR in `data`, and its offset.
pub fn find_bare(data: &[u8]) -> Option<(BareEnding, usize)> {
    let mut i = 0;
    while let Some(k) = memchr::memchr2(b'\r', b'\n', &data[i..]) {
        let at = i + k;
        match data[at] {
            b'\n' => return Some((BareEnding::Lf, at)),
            _ if data.get(at + 1) == Some(&b'\n') => i = at + 2,
            _ => return Some((BareEnding::Cr, at)),
        }
    }
    None
}

/// `data` with each bare LF and bare CR turned into CRLF (`[smtp] invalid_line_endings = "Fix"`).
/// Borrows when there is nothing to change.
pub fn to_crlf(data: &[u8]) -> Cow<'_, [u8]> {
    let Some((_, first)) = find_bare(data) else { return Cow::Borrowed(data) };
    let mut out = Vec::with_capacity(data.len() + 64);
    out.extend_from_slice(&data[..first]);
    let mut i = first;
    while i < data.len() {
        match memchr::memchr2(b'\r', b'\n', &data[i..]) {
            None => {
                out.extend_from_slice(&data[i..]);
                break;
            }
            Some(k) => {
                out.extend_from_slice(&data[i..i + k]);
                out.extend_from_slice(b"\r\n");
                let at = i + k;
                i = if data[at] == b'\r' && data.get(at + 1) == Some(&b'\n') { at + 2 } else { at + 1 };
            }
        }
    }
    Cow::Owned(out)
}

/// What follows `DATA`'s 354 on the wire (RFC 5321 §4.1.1.4, §4.5.2): every line of `data` ended by
/// CRLF (a bare LF or bare CR counts as a line end and becomes CRLF; a last line without an ending
/// gets one), every line that starts with `.` given a second one, then the terminating `.` CRLF.
/// The result contains `CRLF . CRLF` exactly once, at its end (or is just `. CRLF` for empty data).
pub fn smtp_data_payload(data: &[u8]) -> Vec<u8> {
    // A leading dot on one line in 64 is already generous for mail.
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 8);
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'.' {
            out.push(b'.');
        }
        match memchr::memchr2(b'\r', b'\n', &data[i..]) {
            None => {
                out.extend_from_slice(&data[i..]);
                out.extend_from_slice(b"\r\n");
                break;
            }
            Some(k) => {
                let at = i + k;
                out.extend_from_slice(&data[i..at]);
                out.extend_from_slice(b"\r\n");
                i = if data[at] == b'\r' && data.get(at + 1) == Some(&b'\n') { at + 2 } else { at + 1 };
            }
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a receiver that reads CRLF lines and unstuffs dots gets back from a payload.
    fn unstuff(payload: &[u8]) -> Vec<u8> {
        let body = payload.strip_suffix(b".\r\n").expect("terminator");
        let mut out = Vec::new();
        for line in body.split_inclusive(|b| *b == b'\n') {
            assert!(line.ends_with(b"\r\n"), "every line ends CRLF: {line:?}");
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    #[test]
    fn finds_the_first_bare_ending() {
        assert_eq!(find_bare(b"a\r\nb\r\n"), None);
        assert_eq!(find_bare(b""), None);
        assert_eq!(find_bare(b"a\r\nb\nc"), Some((BareEnding::Lf, 4)));
        assert_eq!(find_bare(b"a\rb\r\n"), Some((BareEnding::Cr, 1)));
        assert_eq!(find_bare(b"ends with cr\r"), Some((BareEnding::Cr, 12)));
        assert_eq!(find_bare(b"\r\r\n"), Some((BareEnding::Cr, 0)));
        assert_eq!(find_bare(b"\n"), Some((BareEnding::Lf, 0)));
    }

    #[test]
    fn fix_turns_each_bare_ending_into_crlf() {
        assert!(matches!(to_crlf(b"clean\r\n"), Cow::Borrowed(_)));
        assert_eq!(&*to_crlf(b"hello\n.\r\nMAIL FROM:<x@y>\r\n"), b"hello\r\n.\r\nMAIL FROM:<x@y>\r\n");
        assert_eq!(&*to_crlf(b"a\rb\n\r\nc\r"), b"a\r\nb\r\n\r\nc\r\n");
        assert_eq!(&*to_crlf(b"\r\r\n"), b"\r\n\r\n");
    }

    #[test]
    fn payload_stuffs_dots_and_terminates_once() {
        assert_eq!(smtp_data_payload(b""), b".\r\n");
        assert_eq!(smtp_data_payload(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(smtp_data_payload(b"no final newline"), b"no final newline\r\n.\r\n");
        assert_eq!(smtp_data_payload(b".\r\n..\r\n.x"), b"..\r\n...\r\n..x\r\n.\r\n");
        assert_eq!(smtp_data_payload(b"\r\n\r\n"), b"\r\n\r\n.\r\n");
    }

    #[test]
    fn the_smuggling_body_cannot_end_the_message_early() {
        let body = b"Subject: hi\r\n\r\nhello\n.\r\nMAIL FROM:<spoof@bank.test>\r\nRCPT TO:<v@x.test>\r\nDATA\r\n\rforged\r.\r\n";
        let wire = smtp_data_payload(body);
        assert_eq!(
            wire,
            b"Subject: hi\r\n\r\nhello\r\n..\r\nMAIL FROM:<spoof@bank.test>\r\nRCPT TO:<v@x.test>\r\nDATA\r\n\r\nforged\r\n..\r\n.\r\n"
        );
        assert_eq!(find_bare(&wire), None);
        let end = b"\n.\r\n";
        assert_eq!(wire.windows(end.len()).position(|w| w == end), Some(wire.len() - end.len()));
    }

    #[test]
    fn a_clean_message_round_trips() {
        let body = b"From: a@b\r\n\r\n.leading\r\nmiddle . dot\r\n..two\r\n";
        assert_eq!(unstuff(&smtp_data_payload(body)), body);
        // A repaired message round-trips to its repaired form.
        let dirty = b"x\n.y\rz";
        assert_eq!(unstuff(&smtp_data_payload(dirty)), b"x\r\n.y\r\nz\r\n");
    }

    /// Every input, of a small alphabet that holds all the troublemakers, up to 6 bytes.
    #[test]
    fn exhaustive_small_inputs_keep_the_invariants() {
        let alphabet = [b'\r', b'\n', b'.', b'a'];
        let mut input = Vec::new();
        for len in 0..=6u32 {
            for n in 0..alphabet.len().pow(len) {
                input.clear();
                let mut k = n;
                for _ in 0..len {
                    input.push(alphabet[k % alphabet.len()]);
                    k /= alphabet.len();
                }
                let wire = smtp_data_payload(&input);
                assert_eq!(find_bare(&wire), None, "{input:?}");
                let end = b"\r\n.\r\n";
                let hits = wire.windows(end.len()).filter(|w| w == end).count();
                let want = usize::from(wire.len() > 3);
                assert_eq!(hits, want, "{input:?} -> {wire:?}");
                assert!(wire.ends_with(b".\r\n"));
                assert_eq!(unstuff(&wire), unstuff(&smtp_data_payload(&to_crlf(&input))), "{input:?}");
            }
        }
    }
}
