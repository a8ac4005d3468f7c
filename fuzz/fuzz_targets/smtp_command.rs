//! The SMTP command parser: any line parses or is refused with a reply; never a panic.
#![no_main]
use ferry_actors::smtp_server::command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Err(e) = command::parse(line) {
        let reply = e.reply();
        assert!(reply.starts_with('5') || reply.starts_with('4'), "{reply}");
    }
});
