//! The queue-name parser (SPEC §1.4): any string parses without a panic; and parts free of the
//! delimiters (`:` `@` `!`, which the format does not escape; a routing domain may hold `:` and
//! `!`) survive format → parse unchanged.
//! A tenant such as ":x" does not: "::x@d" and ":x@d" are the same name to the SPEC's parser
//! (regression test `delimiters_inside_components_are_not_escaped` in model/queue_name.rs).
#![no_main]
use ferry_actors::model::queue_name::{QueueNameParts, format, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (&str, [&str; 4])| {
    let (name, [c, t, d, rd]) = data;
    let _ = parse(name);
    let clean = |s: &str| !s.contains([':', '@', '!']);
    // The routing domain is last and may hold ':' (a port), but an '@' anywhere splits first.
    if !clean(c) || !clean(t) || !clean(d) || d.is_empty() || rd.contains('@') {
        return;
    }
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let parts = QueueNameParts { campaign: some(c), tenant: some(t), domain: d.to_string(), routing_domain: some(rd) };
    let name = format(c.into(), t.into(), d, rd.into());
    assert_eq!(parse(&name), parts, "{name:?}");
});
