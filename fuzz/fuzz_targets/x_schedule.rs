//! X-Schedule JSON: any text parses or is refused; a schedule that parses adjusts any time into
//! its window without a panic, and survives a JSON round trip.
#![no_main]
use chrono::{DateTime, Utc};
use ferry_actors::model::scheduling::Scheduling;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (&str, i64)| {
    let (text, t) = data;
    let Ok(s) = Scheduling::from_json_str(text) else { return };
    let at = DateTime::<Utc>::from_timestamp(t.rem_euclid(4_102_444_800), 0).unwrap_or_default();
    let adjusted = s.adjust(at);
    assert!(adjusted >= at, "Adjust(t) is the earliest allowed instant >= t: {at} -> {adjusted}");
    let again = Scheduling::from_json(&s.to_json()).expect("a schedule's own JSON parses");
    assert_eq!(again.to_json(), s.to_json());
});
