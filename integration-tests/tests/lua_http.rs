//! `kumo.http` from a custom_lua connection (issue #16 item 2), beyond the webhook POST the log
//! hook tests make: GET/PUT, `basic_auth`, `bearer_auth`, `header`, `user_agent`, the response's
//! `headers()`, and both timeouts (the client's and the request's) against a server that never
//! answers. The connection's `send` returns what it saw as its disposition, so the Delivery
//! record's response is the oracle; a request error is a transient failure naming it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use ferry_integration_tests::smtp::queued_id;
use ferry_integration_tests::{FerryNode, RawSmtp, wait_until};
use serde_json::Value;

/// Answers each request with its own request line and headers as the body (one per line,
/// names lower-cased) and an `X-Echo: yes` header.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut head = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end().to_string();
                        if line.is_empty() {
                            break;
                        }
                        let line = match line.split_once(':') {
                            Some((name, value)) => format!("{}:{}", name.to_ascii_lowercase(), value),
                            None => line,
                        };
                        if let Some(v) = line.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        head.push(line);
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    head.push(format!("body={}", String::from_utf8_lossy(&body)));
                    let text = head.join("\n");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nX-Echo: yes\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if writer.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Accepts connections and reads, but never answers.
fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// A policy whose `lua` queue delivers with `send(msg)` = SEND (Lua statements ending in a
/// `return` of the disposition).
fn policy(send: &str) -> String {
    format!(
        r#"
kumo.on('make.http', function()
  local connection = {{}}
  function connection:send(msg)
{send}
  end
  return connection
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config {{ retry_interval = '1h', protocol = {{ custom_lua = {{ constructor = 'make.http' }} }} }}
end)
"#
    )
}

/// Send one message and return the first final or transient record of its delivery.
fn outcome(node: &FerryNode) -> Value {
    let mut c = RawSmtp::connect(node.smtp);
    let id = queued_id(&c.send_message("s@example.com", &["r@example.com"], "Subject: h\r\n\r\nx\r\n"));
    wait_until("the delivery's record", Duration::from_secs(30), || {
        node.records_for(&id).into_iter().find(|r| r["type"] == "Delivery" || r["type"] == "TransientFailure")
    })
}

fn content(record: &Value) -> String {
    record["response"]["content"].as_str().unwrap_or_default().to_string()
}

#[test]
fn requests_carry_auth_headers_and_agent_and_responses_show_headers() {
    let echo = echo_server();
    let node = FerryNode::start(
        "",
        Some(&policy(&format!(
            r#"
    local client = kumo.http.build_client {{ user_agent = 'hooks/1.0' }}
    local basic = client:get('http://{echo}/a'):basic_auth('user', 'secret'):send()
    local bearer = client:put('http://{echo}/b'):bearer_auth('tok123'):header('X-Tenant', 'acme'):body('payload'):send()
    local h = basic:headers()
    -- Single line: the disposition is one response line.
    return table.concat({{ tostring(basic:status_code()), h['x-echo'] or 'no-header', basic:text(), bearer:text() }}, ' | '):gsub('\n', ' ; ')
"#
        ))),
    );
    let record = outcome(&node);
    assert_eq!(record["type"], "Delivery", "{record}");
    let text = content(&record);
    assert!(
        text.starts_with("200 | yes | GET /a HTTP/1.1"),
        "status, a response header and the request line: {text}"
    );
    // user:secret in base64.
    assert!(text.contains("authorization: Basic dXNlcjpzZWNyZXQ="), "basic_auth: {text}");
    assert!(text.contains("PUT /b HTTP/1.1"), "{text}");
    assert!(text.contains("authorization: Bearer tok123"), "bearer_auth: {text}");
    assert!(text.contains("x-tenant: acme"), "header: {text}");
    assert!(text.contains("body=payload"), "body: {text}");
    assert_eq!(text.matches("user-agent: hooks/1.0").count(), 2, "user_agent on every request: {text}");
}

#[test]
fn a_server_that_never_answers_times_out_and_the_message_is_retried() {
    let silent = silent_server();
    for (label, send) in [
        (
            "client timeout",
            format!(
                "    local client = kumo.http.build_client {{ timeout = '300ms' }}\n    client:get('http://{silent}/'):send()\n    return 'answered'"
            ),
        ),
        (
            "request timeout",
            format!(
                "    local client = kumo.http.build_client {{}}\n    client:get('http://{silent}/'):timeout('300ms'):send()\n    return 'answered'"
            ),
        ),
    ] {
        let node = FerryNode::start("", Some(&policy(&send)));
        let started = std::time::Instant::now();
        let record = outcome(&node);
        assert_eq!(record["type"], "TransientFailure", "{label}: {record}");
        let text = content(&record).to_ascii_lowercase();
        assert!(text.contains("timeout") || text.contains("timed out"), "{label}: the error says so: {text}");
        assert!(text.contains(&silent.to_string()), "{label}: and names the URL: {text}");
        assert!(started.elapsed() < Duration::from_secs(20), "{label}: not the default 60 s");
    }
}
