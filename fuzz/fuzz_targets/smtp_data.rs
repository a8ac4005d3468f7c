//! The DATA reader, fed in arbitrary pieces: it never consumes more than it is given, and the
//! outcome does not depend on how the input was split.
#![no_main]
use ferry_actors::smtp_server::data::DataReader;
use libfuzzer_sys::fuzz_target;

fn run(input: &[u8], pieces: &[usize]) -> (usize, Option<String>) {
    let mut reader = DataReader::new(4096);
    let mut at = 0;
    let mut sizes = pieces.iter().cycle();
    while at < input.len() {
        let n = (*sizes.next().unwrap_or(&1)).max(1).min(input.len() - at);
        let (used, outcome) = reader.feed(&input[at..at + n]);
        assert!(used <= n);
        at += used;
        if let Some(o) = outcome {
            return (at, Some(format!("{o:?}")));
        }
        if used == 0 {
            // Nothing consumed without an outcome would loop forever.
            assert!(used > 0 || n == 0, "no progress");
        }
    }
    (at, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let whole = run(input, &[input.len().max(1)]);
    let pieces = run(input, &[usize::from(split % 7) + 1, usize::from(split / 7 % 5) + 1]);
    assert_eq!(whole, pieces, "the outcome depends on how the input was split");
});
