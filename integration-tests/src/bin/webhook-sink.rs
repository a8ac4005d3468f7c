//! `webhook-sink --port-file FILE`: a counting webhook for benchmarks. Every POSTed JSON body is
//! counted (an array as its items); `GET` answers `{"events":N,"requests":N,"first":T,"last":T}` (Unix times of
//! the first and the last event). The port it listens on (127.0.0.1) is written to FILE.

use ferry_integration_tests::webhook::Webhook;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(flag), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: webhook-sink --port-file FILE");
        std::process::exit(2);
    };
    if flag != "--port-file" {
        eprintln!("unknown argument {flag:?}; usage: webhook-sink --port-file FILE");
        std::process::exit(2);
    }
    let webhook = Webhook::counting();
    let tmp = format!("{file}.tmp");
    if let Err(e) =
        std::fs::write(&tmp, webhook.addr().port().to_string()).and_then(|_| std::fs::rename(&tmp, &file))
    {
        eprintln!("cannot write {file}: {e}");
        std::process::exit(1);
    }
    loop {
        std::thread::park();
    }
}
