//! MTA-STS (issue #14 item 2): a destination domain publishing an `enforce` policy gets mail only
//! at the MX hosts the policy names, and only over verified TLS, even on an egress path that says
//! `enable_tls = 'Disabled'`. The policy comes from a loopback HTTPS server, the `_mta-sts` TXT
//! record and the MX records from the loopback DNS stub, the trust from a test certificate given
//! as `[tls] ca_file`. The receiving MTA is a second Ferry node (its Reception records are the
//! oracle that mail arrived, and over which TLS).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Arc, Mutex};

use ferry_integration_tests::dns::{DnsStub, Rr};
use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::tls::{TestCert, server_presenting, test_cert};
use ferry_integration_tests::{FerryNode, RawSmtp};
use serde_json::Value;

/// An HTTPS server answering `GET /.well-known/mta-sts.txt` with the policy of the Host asked
/// for, counting requests by host.
struct PolicyServer {
    port: u16,
    requests: Arc<Mutex<HashMap<String, usize>>>,
}

impl PolicyServer {
    fn start(cert: &TestCert, policies: &[(&str, &str)]) -> PolicyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let policies: HashMap<String, String> =
            policies.iter().map(|(h, p)| (h.to_string(), p.to_string())).collect();
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let (config, counts) = (server_presenting(cert), requests.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let host = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Host: "))
                    .map(|h| h.trim().to_string())
                    .unwrap_or_default();
                *counts.lock().unwrap().entry(host.clone()).or_insert(0) += 1;
                let response = match (text.starts_with("GET /.well-known/mta-sts.txt "), policies.get(&host))
                {
                    (true, Some(p)) => {
                        format!(
                            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{p}",
                            p.len()
                        )
                    }
                    _ => "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
                };
                let _ = tls.write_all(response.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        PolicyServer { port, requests }
    }

    fn requests(&self, host: &str) -> usize {
        self.requests.lock().unwrap().get(host).copied().unwrap_or(0)
    }
}

fn enforce(mx: &str) -> String {
    format!("version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

struct World {
    cert: TestCert,
    receiver: FerryNode,
    policies: PolicyServer,
    dns: DnsStub,
}

/// Three destination domains, each with an `enforce` policy and one MX on the receiving node:
/// - `good.test`: the policy names its MX `mx.good.test`, whose certificate is valid;
/// - `stray.test`: the MX `mx.stray.test` is not in the policy (which names `mx.elsewhere.test`);
/// - `badcert.test`: the policy names its MX `mx.badcert.test`, but the certificate does not.
fn world() -> World {
    let cert = test_cert(&[
        "mx.good.test",
        "mx.stray.test",
        "mta-sts.good.test",
        "mta-sts.stray.test",
        "mta-sts.badcert.test",
    ]);
    let extra = format!(
        "[smtp]\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\n",
        cert.cert.display(),
        cert.key.display()
    );
    let null = "kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)";
    let receiver = FerryNode::start(&extra, Some(null));
    let policies = PolicyServer::start(
        &cert,
        &[
            ("mta-sts.good.test", &enforce("mx.good.test")),
            ("mta-sts.stray.test", &enforce("mx.elsewhere.test")),
            ("mta-sts.badcert.test", &enforce("*.badcert.test")),
        ],
    );
    let local = Ipv4Addr::LOCALHOST;
    let mut records = Vec::new();
    for domain in ["good.test", "stray.test", "badcert.test"] {
        let (mx, sts, txt) =
            (format!("mx.{domain}"), format!("mta-sts.{domain}"), format!("_mta-sts.{domain}"));
        records.push((domain.to_string(), Rr::Mx(10, mx.clone())));
        records.push((mx, Rr::A(local)));
        records.push((sts, Rr::A(local)));
        records.push((txt, Rr::Txt("v=STSv1; id=2026120201".into())));
    }
    let dns = DnsStub::with_records(records.iter().map(|(n, r)| (n.as_str(), r.clone())).collect());
    World { cert, receiver, policies, dns }
}

/// A sending node resolving through the stub and trusting the test certificate, whose egress
/// path is `path` (plus loopback MX hosts allowed and the receiver's port).
fn sender(w: &World, path: &str) -> FerryNode {
    let policy = format!(
        r#"
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ retry_interval = '1h' }}
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {{ {path}, prohibited_hosts = {{}}, smtp_port = {} }}
end)
"#,
        w.receiver.smtp.port()
    );
    let config = format!(
        "[dns]\nservers = [\"{}\"]\n\n[tls]\nca_file = \"{}\"\nmta_sts_policy_port = {}\n",
        w.dns.addr(),
        w.cert.cert.display(),
        w.policies.port
    );
    FerryNode::start(&config, Some(&policy))
}

fn send(node: &FerryNode, rcpt: &str) -> String {
    let mut c = RawSmtp::connect(node.smtp);
    queued_id(&c.send_message("s@example.com", &[rcpt], "Subject: sts\r\n\r\nx\r\n"))
}

fn outcome(node: &FerryNode, id: &str, kind: &str) -> Value {
    node.wait_sequence(id, &["Reception", kind]).remove(1)
}

#[test]
fn enforce_delivers_to_a_listed_mx_over_verified_tls_and_refuses_the_rest() {
    let w = world();
    // The path asks for no TLS at all: only MTA-STS can require it here.
    let sender = sender(&w, "enable_tls = 'Disabled'");

    // good.test: the MX is listed and its certificate verifies: delivered, over TLS although
    // the path said Disabled.
    let first = outcome(&sender, &send(&sender, "a@good.test"), "Delivery");
    assert_eq!(first["tls_protocol_version"], "TLSv1_3", "{first}");
    assert!(first["tls_cipher"].as_str().unwrap().starts_with("TLS13_"), "{first}");
    let reception = w.receiver.wait_records("Reception", 1).remove(0);
    assert_eq!(reception["tls_protocol_version"], "TLSv1_3", "the receiver saw TLS: {reception}");

    // A second message is served from the cache: still one policy fetch for the domain.
    let second = outcome(&sender, &send(&sender, "b@good.test"), "Delivery");
    assert_eq!(second["tls_protocol_version"], "TLSv1_3", "{second}");
    assert_eq!(w.policies.requests("mta-sts.good.test"), 1, "the policy is cached by its max_age");

    // stray.test: its MX is not in the policy: a TransientFailure naming MTA-STS and the host.
    let stray = outcome(&sender, &send(&sender, "c@stray.test"), "TransientFailure");
    let why = stray["response"]["content"].as_str().unwrap();
    assert!(why.contains("MTA-STS") && why.contains("mx.stray.test"), "{stray}");

    // badcert.test: listed by the policy's wildcard, but the certificate does not name it: the
    // handshake fails verification and nothing is sent in clear.
    let badcert = outcome(&sender, &send(&sender, "d@badcert.test"), "TransientFailure");
    let why = badcert["response"]["content"].as_str().unwrap().to_ascii_lowercase();
    assert!(why.contains("certificate") || why.contains("name"), "{badcert}");

    // Only the two good.test messages reached the receiver.
    let receptions = w.receiver.records().into_iter().filter(|r| r["type"] == "Reception").count();
    assert_eq!(receptions, 2);
}

#[test]
fn enable_mta_sts_false_leaves_the_path_alone() {
    let w = world();
    // Without MTA-STS, stray.test's MX is used, in clear, as the path says; no policy is fetched.
    let node = sender(&w, "enable_tls = 'Disabled', enable_mta_sts = false");
    let delivery = outcome(&node, &send(&node, "e@stray.test"), "Delivery");
    assert!(delivery["tls_protocol_version"].is_null(), "no TLS: {delivery}");
    assert_eq!(w.policies.requests("mta-sts.stray.test"), 0);
}
