//! The TOML config: any text loads or is refused with an error that names the file.
#![no_main]
use ferry_config::{Config, ConfigError, ConfigSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let source = ConfigSource::File("/etc/ferry/ferry.toml".into());
    match Config::parse(text, source) {
        Ok(_) => {}
        Err(ConfigError::Invalid(l)) => assert_eq!(l.file, "/etc/ferry/ferry.toml"),
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
});
