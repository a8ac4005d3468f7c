use std::path::PathBuf;

use crate::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, ConfigSource::File(PathBuf::from("/etc/ferry/ferry.toml")))
}

fn located(text: &str) -> error_parts::Parts {
    match parse(text).expect_err("config should be rejected") {
        ConfigError::Invalid(l) => error_parts::Parts {
            line: l.line,
            key: l.key.clone(),
            rendered: ConfigError::Invalid(l).to_string(),
        },
        other => panic!("unexpected error {other:?}"),
    }
}

mod error_parts {
    pub struct Parts {
        pub line: Option<usize>,
        pub key: String,
        pub rendered: String,
    }
}

#[test]
fn embedded_defaults_are_the_example_file() {
    let embedded = Config::load(None).unwrap();
    let example = Config::load(Some(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/ferry.toml"
    ))))
    .unwrap();
    assert_eq!(embedded.smtp.listen.to_string(), "127.0.0.1:2525");
    assert_eq!(embedded.http.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(embedded.node.data_dir, PathBuf::from("./ferry-data"));
    assert!(embedded.spool.fsync);
    assert_eq!(format!("{:?}", embedded.smtp), format!("{:?}", example.smtp));
    assert_eq!(format!("{:?}", embedded.logs), format!("{:?}", example.logs));
    assert!(matches!(embedded.policy_source(), Some(PolicySource::Embedded { .. })));
}

#[test]
fn empty_file_gets_defaults_and_derived_paths() {
    let c = parse("").unwrap();
    assert_eq!(c.spool_path(), PathBuf::from("./ferry-data/spool"));
    assert_eq!(c.logs_dir(), PathBuf::from("./ferry-data/logs"));
    assert_eq!(c.smtp.idle_timeout.0.as_secs(), 300);
    assert!(c.policy_source().is_none());
}

#[test]
fn policy_path_is_relative_to_the_config_file() {
    let c = parse("[policy]\nscript = \"policy.lua\"\n").unwrap();
    assert_eq!(c.policy_source(), Some(PolicySource::File(PathBuf::from("/etc/ferry/policy.lua"))));
}

#[test]
fn unknown_key_names_key_file_and_line() {
    let p = located("[smtp]\nlisten = \"127.0.0.1:25\"\nmax_recipents = 10\n");
    assert_eq!(p.key, "smtp.max_recipents");
    assert_eq!(p.line, Some(3));
    assert!(p.rendered.contains("/etc/ferry/ferry.toml"), "{}", p.rendered);
    assert!(p.rendered.contains("line 3"), "{}", p.rendered);
    assert!(p.rendered.contains("unknown field"), "{}", p.rendered);
}

#[test]
fn unknown_section_is_named() {
    let p = located("[smtpd]\nlisten = \"127.0.0.1:25\"\n");
    assert_eq!(p.key, "smtpd");
    assert_eq!(p.line, Some(1));
}

#[test]
fn bad_duration_names_key_and_line() {
    let p = located("[node]\ndata_dir = \"/tmp/x\"\n\n[smtp]\nidle_timeout = \"5 fortnights\"\n");
    assert_eq!(p.key, "smtp.idle_timeout");
    assert_eq!(p.line, Some(5));
    assert!(p.rendered.contains("invalid duration"), "{}", p.rendered);
}

#[test]
fn bad_cidr_names_key_and_line() {
    let p = located("[smtp]\nrelay_hosts = [\"127.0.0.0/8\", \"10.0.0.0/40\"]\n");
    assert!(p.key.starts_with("smtp.relay_hosts"), "{}", p.key);
    assert_eq!(p.line, Some(2));
    assert!(p.rendered.contains("invalid CIDR"), "{}", p.rendered);
}

#[test]
fn bad_socket_address_and_type_errors_are_located() {
    let p = located("[http]\nlisten = \"localhost\"\n");
    assert_eq!(p.key, "http.listen");
    assert_eq!(p.line, Some(2));
    let p = located("[spool]\nfsync = \"yes\"\n");
    assert_eq!(p.key, "spool.fsync");
    assert_eq!(p.line, Some(2));
}

#[test]
fn semantic_validation_names_key_and_line() {
    let p = located("[smtp]\nmax_recipients = 0\n");
    assert_eq!(p.key, "smtp.max_recipients");
    assert_eq!(p.line, Some(2));
    let p = located("[node]\nid = \"not-a-uuid\"\n");
    assert_eq!(p.key, "node.id");
    assert!(p.rendered.contains("invalid node id"));
    let p = located("[tls]\nmta_sts_policy_port = 0\n");
    assert_eq!((p.key.as_str(), p.line), ("tls.mta_sts_policy_port", Some(2)));
    assert_eq!(parse("").unwrap().tls.mta_sts_policy_port, 443);
}

#[test]
fn syntax_error_has_a_line() {
    let p = located("[smtp]\nlisten = \n");
    assert_eq!(p.line, Some(2));
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = Config::load(Some(std::path::Path::new("/nonexistent/ferry.toml"))).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ferry.toml"), "{err}");
}

#[test]
fn xfer_and_token_keys_are_validated() {
    let c = parse("").unwrap();
    assert_eq!((c.xfer.concurrency, c.xfer.batch_size, c.xfer.max_body_size.0), (32, 100, 64 << 20));
    assert_eq!(c.bearer_token().unwrap(), None);
    let p = located("[xfer]\nbatch_size = 0\n");
    assert_eq!((p.key.as_str(), p.line), ("xfer.batch_size", Some(2)));
    assert_eq!(c.xfer.idle_timeout.as_duration(), std::time::Duration::from_secs(600));
    let p = located("[xfer]\nconcurrency = 4\nidle_timeout = \"0s\"\n");
    assert_eq!((p.key.as_str(), p.line), ("xfer.idle_timeout", Some(3)));
    let p = located("[http]\nbearer_token = \"short\"\n");
    assert_eq!((p.key.as_str(), p.line), ("http.bearer_token", Some(2)));
    let p = located("[http]\nbearer_token = \"0123456789abcdef\"\nbearer_token_file = \"t\"\n");
    assert!(p.rendered.contains("not both"), "{}", p.rendered);
    let c = parse("[http]\nbearer_token = \" 0123456789abcdef \"\n").unwrap();
    assert_eq!(c.bearer_token().unwrap().as_deref(), Some("0123456789abcdef"));
}

#[test]
fn the_token_file_is_relative_to_the_config_and_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(&cfg, "[http]\nbearer_token_file = \"secret\"\n").unwrap();
    let c = Config::load(Some(&cfg)).unwrap();
    let err = c.bearer_token().unwrap_err().to_string();
    assert!(err.contains("http.bearer_token_file") && err.contains("secret"), "{err}");
    std::fs::write(dir.path().join("secret"), "abc\n").unwrap();
    assert!(c.bearer_token().unwrap_err().to_string().contains("at least 16"));
    std::fs::write(dir.path().join("secret"), "  0123456789abcdefXYZ\n").unwrap();
    assert_eq!(c.bearer_token().unwrap().as_deref(), Some("0123456789abcdefXYZ"));
}

#[test]
fn overflowing_map_size_names_key_file_and_line() {
    // 2e19 bytes do not fit in 64 bits: refused while parsing, not saturated.
    let p = located("[node]\ndata_dir = \"/tmp/x\"\n\n[spool]\nmap_size = \"20000000TB\"\n");
    assert_eq!(p.key, "spool.map_size");
    assert_eq!(p.line, Some(5));
    assert!(p.rendered.contains("/etc/ferry/ferry.toml"), "{}", p.rendered);
    assert!(p.rendered.contains("too large"), "{}", p.rendered);
    // Fits in 64 bits, but no process can map it: refused by validation, not by LMDB at open.
    let p = located("[spool]\nfsync = true\nmap_size = \"200TiB\"\n");
    assert_eq!((p.key.as_str(), p.line), ("spool.map_size", Some(3)));
    assert!(p.rendered.contains("must be at most 64TiB"), "{}", p.rendered);
    let p = located("[spool]\nmap_size = 9223372036854775807\n");
    assert_eq!((p.key.as_str(), p.line), ("spool.map_size", Some(2)));
    assert_eq!(parse("[spool]\nmap_size = \"64TiB\"\n").unwrap().spool.map_size.0, 64 << 40);
}

#[test]
fn queue_config_retry_interval_defaults_to_a_minute_and_must_be_positive() {
    let c = parse("").unwrap();
    assert_eq!(c.policy.queue_config_retry_interval.0, std::time::Duration::from_secs(60));
    let c = parse("[policy]\nqueue_config_retry_interval = \"1s\"\n").unwrap();
    assert_eq!(c.policy.queue_config_retry_interval.0, std::time::Duration::from_secs(1));
    let p = located("[policy]\npool_size = 1\nqueue_config_retry_interval = \"0s\"\n");
    assert_eq!((p.key.as_str(), p.line), ("policy.queue_config_retry_interval", Some(3)));
    assert!(
        p.rendered.contains("/etc/ferry/ferry.toml") && p.rendered.contains("greater than 0"),
        "{}",
        p.rendered
    );
}

#[test]
fn inject_limits_have_defaults_and_errors_name_the_key_and_file() {
    let c = parse("").unwrap();
    assert_eq!((c.http.max_inject_size.0, c.http.max_inject_recipients), (20 << 20, 10_000));
    let c = parse("[http]\nmax_inject_size = \"1MiB\"\n").unwrap();
    assert_eq!(c.http.max_inject_size.0, 1 << 20);
    let p = located("[http]\nmax_inject_size = \"10B\"\n");
    assert_eq!((p.key.as_str(), p.line), ("http.max_inject_size", Some(2)));
    assert!(p.rendered.contains("/etc/ferry/ferry.toml"), "{}", p.rendered);
    let p = located("[http]\nlisten = \"127.0.0.1:0\"\nmax_inject_recipients = 0\n");
    assert_eq!((p.key.as_str(), p.line), ("http.max_inject_recipients", Some(3)));
}

#[test]
fn cluster_is_optional_and_its_errors_never_repeat_the_redis_password() {
    assert!(parse("").unwrap().cluster.is_none());
    let c = parse("[cluster]\nredis = \"redis://:pw@10.0.0.9:6379/\"\n").unwrap().cluster.unwrap();
    assert_eq!((c.node_url, c.heartbeat_interval.0.as_secs()), (None, 5));
    let p = located("[cluster]\nredis = \"http://:s3cret@10.0.0.9/\"\n");
    assert_eq!((p.key.as_str(), p.line), ("cluster.redis", Some(2)));
    assert!(!p.rendered.contains("s3cret"), "{}", p.rendered);
    let p = located("[cluster]\nredis = \"redis://h/\"\nnode_url = \"10.0.0.1:8000\"\n");
    assert_eq!(p.key, "cluster.node_url");
    let p = located("[cluster]\nredis = \"redis://h/\"\nheartbeat_interval = \"0s\"\n");
    assert_eq!(p.key, "cluster.heartbeat_interval");
    let p = located("[cluster]\nredis = \"redis://h/\"\nnodes = 3\n");
    assert_eq!(p.key, "cluster.nodes");
}
