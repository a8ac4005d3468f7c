//! Reading log segments, for `ferry logs` and tests.
//!
//! Segments may be read while the writer still has them open: the writer flushes a zstd block
//! whenever it goes idle, so a reader sees a valid stream that merely lacks its end. Such a
//! truncated frame is therefore normal, not an error; only the trailing partial line is dropped.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// First bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// How often `for_each_line` looks for new lines and segments when following.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Does `name` start with a segment timestamp `YYYYmmdd-HHMMSS.nnnnnnnnn`?
///
/// A suffix is allowed (per-record logs may append one, SPEC §6 `per_record.suffix`) as long as
/// it does not start with a digit, which would make the timestamp ambiguous.
fn is_segment_name(name: &str) -> bool {
    let b = name.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() >= 25
        && digits(0..8)
        && b[8] == b'-'
        && digits(9..15)
        && b[15] == b'.'
        && digits(16..25)
        && !b.get(25).is_some_and(u8::is_ascii_digit)
}

/// List segment files in `dir` (names matching the timestamp pattern), sorted oldest first.
///
/// The timestamp is fixed-width, so name order is open-time order.
pub fn list_segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let is_name = path.file_name().and_then(|n| n.to_str()).is_some_and(is_segment_name);
        if is_name && path.is_file() {
            segments.push(path);
        }
    }
    segments.sort();
    Ok(segments)
}

/// Is the segment complete (no write bits)? The writer clears them when it closes a segment.
pub fn is_complete(path: &Path) -> io::Result<bool> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o222 == 0)
}

/// Decode one segment file into its complete lines. zstd is detected by its magic number
/// (28 B5 2F FD); anything else is plain text.
///
/// A truncated/unfinished zstd frame (segment still open, or crash) is not an error: the complete
/// lines decoded so far are returned and a trailing partial line is dropped. Data that is not
/// valid zstd at all is reported as `InvalidData`. Invalid UTF-8 is replaced, not rejected, so
/// one bad byte does not hide a whole segment.
pub fn read_segment_lines(path: &Path) -> io::Result<Vec<String>> {
    let data = fs::read(path)?;
    let text = if data.starts_with(&ZSTD_MAGIC) {
        decode_zstd(path, &data)?
    } else if ZSTD_MAGIC.starts_with(&data) {
        // Empty, or the writer has not yet written the whole magic number.
        Vec::new()
    } else {
        data
    };
    Ok(complete_lines(&text))
}

/// Decode as much of a (possibly unfinished) zstd stream as is present.
fn decode_zstd(path: &Path, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    // On error `read_to_end` keeps what it decoded before the error in `out`.
    match zstd::stream::read::Decoder::with_buffer(data).and_then(|mut d| d.read_to_end(&mut out)) {
        Ok(_) => Ok(out),
        // Input ended inside a frame: open or crash-truncated segment.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(out),
        Err(e) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: corrupt zstd data: {e}", path.display()),
        )),
    }
}

/// Split into lines, dropping anything after the last newline (a line still being written).
fn complete_lines(text: &[u8]) -> Vec<String> {
    match text.iter().rposition(|&b| b == b'\n') {
        Some(last) => text[..last]
            .split(|&b| b == b'\n')
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect(),
        None => Vec::new(),
    }
}

/// Per-segment progress of `for_each_line`.
#[derive(Default)]
struct Progress {
    /// Lines already passed to `out`.
    emitted: usize,
    /// The segment was complete when last read, so it has nothing more to give.
    done: bool,
}

/// Print-style driver for `ferry logs`: call `out(line)` for every record line of every segment
/// in order. With `follow`, keep polling (every 200 ms) for new lines in open segments and for
/// new segments, until `out` returns false.
///
/// Open segments are re-decoded from the start on each poll and the first `emitted` lines
/// skipped, so no line is emitted twice. When following, a missing directory counts as empty
/// (the server may not have created it yet) and segments that vanish between listing and
/// reading (retention cleanup) are skipped.
pub fn for_each_line(dir: &Path, follow: bool, mut out: impl FnMut(&str) -> bool) -> io::Result<()> {
    let mut progress: HashMap<PathBuf, Progress> = HashMap::new();
    loop {
        let segments = match list_segments(dir) {
            Err(e) if follow && e.kind() == io::ErrorKind::NotFound => Vec::new(),
            other => other?,
        };
        // Forget deleted segments so memory stays bounded by the directory size.
        progress.retain(|path, _| segments.binary_search(path).is_ok());
        for path in &segments {
            let p = progress.entry(path.clone()).or_default();
            if p.done {
                continue;
            }
            // Check completeness *before* reading: if it was complete then, what we read is final.
            let read = is_complete(path).and_then(|complete| Ok((complete, read_segment_lines(path)?)));
            let (complete, lines) = match read {
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for line in lines.iter().skip(p.emitted) {
                p.emitted += 1;
                if !out(line) {
                    return Ok(());
                }
            }
            p.done = complete;
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::segment_writer::{Compression, LogWriterHandle, SegmentConfig};
    use std::io::Write;
    use std::time::Instant;

    fn zstd_bytes(lines: &[String], flush_every: usize) -> Vec<u8> {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 0).unwrap();
        for (i, line) in lines.iter().enumerate() {
            writeln!(enc, "{line}").unwrap();
            if (i + 1) % flush_every == 0 {
                enc.flush().unwrap();
            }
        }
        enc.finish().unwrap()
    }

    fn lines(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("{{\"n\":{i}}}")).collect()
    }

    fn set_complete(path: &Path) {
        fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
    }

    #[test]
    fn list_segments_filters_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "20260102-030405.000000002",
            "20260102-030405.000000001",
            "20251231-235959.999999999.json",
            "notes.txt",
            "20260102-030405.0000000011",
            "20260102-030405",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        fs::create_dir(dir.path().join("20200101-000000.000000000")).unwrap();
        let names: Vec<_> = list_segments(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["20251231-235959.999999999.json", "20260102-030405.000000001", "20260102-030405.000000002"]
        );
    }

    #[test]
    fn plain_text_drops_partial_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20260102-030405.000000000");
        fs::write(&path, b"{\"a\":1}\n{\"b\":2}\n{\"c\":").unwrap();
        assert_eq!(read_segment_lines(&path).unwrap(), ["{\"a\":1}", "{\"b\":2}"]);
        fs::write(&path, b"").unwrap();
        assert!(read_segment_lines(&path).unwrap().is_empty());
        // Writer caught between the first bytes of the magic number and the rest.
        fs::write(&path, &ZSTD_MAGIC[..2]).unwrap();
        assert!(read_segment_lines(&path).unwrap().is_empty());
    }

    #[test]
    fn truncated_zstd_yields_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20260102-030405.000000000");
        let input = lines(0..2000);
        let bytes = zstd_bytes(&input, 100);
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read_segment_lines(&path).unwrap(), input);

        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let got = read_segment_lines(&path).unwrap();
        assert!(!got.is_empty() && got.len() < input.len(), "{} lines", got.len());
        assert_eq!(got, input[..got.len()]);
    }

    #[test]
    fn corrupt_zstd_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20260102-030405.000000000");
        let mut bytes = ZSTD_MAGIC.to_vec();
        bytes.extend_from_slice(&[0xFF; 64]); // frame header with the reserved bit set
        fs::write(&path, &bytes).unwrap();
        let err = read_segment_lines(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("20260102-030405.000000000"), "{err}");
    }

    #[test]
    fn for_each_line_emits_every_line_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("20260102-030405.000000001");
        let b = dir.path().join("20260102-030405.000000002");
        let c = dir.path().join("20260102-030405.000000003");
        fs::write(&a, zstd_bytes(&lines(0..10), 3)).unwrap();
        set_complete(&a);
        fs::write(&b, lines(10..20).iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        set_complete(&b);
        // Still open: unfinished frame plus a partial line that must not be emitted.
        let mut partial = lines(20..30).iter().map(|l| format!("{l}\n")).collect::<String>();
        partial.push_str("{\"n\":");
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 0).unwrap();
        enc.write_all(partial.as_bytes()).unwrap();
        enc.flush().unwrap();
        fs::write(&c, enc.get_ref()).unwrap();

        let mut got = Vec::new();
        for_each_line(dir.path(), false, |l| {
            got.push(l.to_string());
            true
        })
        .unwrap();
        assert_eq!(got, lines(0..30));

        // Stopping early: `out` returning false ends the walk.
        let mut count = 0;
        for_each_line(dir.path(), false, |_| {
            count += 1;
            count < 5
        })
        .unwrap();
        assert_eq!(count, 5);
    }

    #[test]
    fn for_each_line_follow_picks_up_new_lines_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        let writer = LogWriterHandle::start(SegmentConfig {
            dir: dir.path().to_path_buf(),
            max_segment_duration: Duration::from_secs(3600),
            max_file_size: 300, // rotates every ~30 lines
            compression: Compression::Zstd { level: 0 },
        })
        .unwrap();
        let first = lines(0..50);
        let second = lines(50..100);
        for line in &first {
            writer.write_line(line.clone());
        }

        let (tx, rx) = crossbeam_channel::unbounded();
        let follow_dir = dir.path().to_path_buf();
        let reader = std::thread::spawn(move || {
            for_each_line(&follow_dir, true, |l| l != "stop" && tx.send(l.to_string()).is_ok())
        });
        let recv = |n: usize| -> Vec<String> {
            (0..n).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect()
        };
        assert_eq!(recv(first.len()), first);
        for line in &second {
            writer.write_line(line.clone());
        }
        assert_eq!(recv(second.len()), second);

        // Give the follower two more polls of the open segment: nothing may be repeated.
        assert!(rx.recv_timeout(FOLLOW_POLL * 2 + Duration::from_millis(50)).is_err());

        writer.write_line("stop".into());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(reader.is_finished(), "follower did not stop");
        reader.join().unwrap().unwrap();
        assert_eq!(rx.try_iter().count(), 0);
        writer.shutdown();
        assert!(list_segments(dir.path()).unwrap().len() > 2);
    }
}
