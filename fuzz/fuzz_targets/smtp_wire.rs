//! The delivery normaliser (issue #12, SMTP smuggling): for any message data, what Ferry writes
//! after DATA has no bare LF or bare CR, contains `\n.\r\n` only as its final terminator, and
//! gives back the message (with its line ends made CRLF) to a receiver that unstuffs dots.
#![no_main]
use ferry_actors::model::line_endings::{find_bare, smtp_data_payload, to_crlf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let wire = smtp_data_payload(data);
    assert_eq!(find_bare(&wire), None);
    assert!(wire.ends_with(b".\r\n"));
    let end = b"\n.\r\n";
    let hits: Vec<usize> = wire.windows(end.len()).enumerate().filter(|(_, w)| w == end).map(|(i, _)| i).collect();
    assert!(hits.is_empty() || hits == [wire.len() - end.len()], "terminator inside: {hits:?}");
    // Unstuff as a receiver would, and compare with the repaired input.
    let body = &wire[..wire.len() - 3];
    let mut back = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|b| *b == b'\n') {
        back.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    let mut want = to_crlf(data).into_owned();
    if !want.is_empty() && !want.ends_with(b"\r\n") {
        want.extend_from_slice(b"\r\n");
    }
    assert_eq!(back, want);
});
