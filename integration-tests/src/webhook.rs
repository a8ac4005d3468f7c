//! A webhook receiver for log-hook tests: an HTTP/1.1 server on 127.0.0.1 (keep-alive, bodies
//! by Content-Length) that keeps every POSTed JSON body. It can be told to answer 500 to the
//! first N requests, to show that a failing webhook gets its events again later. In counting mode
//! (benchmarks, `webhook-sink`) it keeps only the number of events and when the first and the
//! last arrived, and answers `GET` with them as JSON.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub struct Webhook {
    addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    bodies: Mutex<Vec<Value>>,
    requests: AtomicUsize,
    fail_first: AtomicUsize,
    /// Counting mode: bodies are counted (an array as its items), not kept.
    counting: bool,
    /// How long each POST waits before it is answered.
    delay: std::time::Duration,
    counted: Mutex<Counted>,
}

/// What a counting webhook has received: events, and the Unix times of the first and the last.
#[derive(Default, Clone, Copy, Debug, serde::Serialize)]
pub struct Counted {
    pub events: u64,
    /// POSTs counted (events / requests is the mean batch).
    pub requests: u64,
    pub first: f64,
    pub last: f64,
}

impl Webhook {
    pub fn start() -> Webhook {
        Self::failing_first(0)
    }

    /// Answer 500 to the first `n` requests (their bodies are not kept), then 200.
    pub fn failing_first(n: usize) -> Webhook {
        Self::with_state(State { fail_first: AtomicUsize::new(n), ..State::default() })
    }

    /// Keep bodies like [`Webhook::start`], but answer each POST only after `delay` (a webhook
    /// that keeps its connections busy).
    pub fn slow(delay: std::time::Duration) -> Webhook {
        Self::with_state(State { delay, ..State::default() })
    }

    /// Count events instead of keeping them (see [`Webhook::counted`]).
    pub fn counting() -> Webhook {
        Self::with_state(State { counting: true, ..State::default() })
    }

    fn with_state(state: State) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(state);
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Webhook { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counting mode: what has arrived so far.
    pub fn counted(&self) -> Counted {
        *self.state.counted.lock().unwrap()
    }

    /// Requests answered so far (failed ones included).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every JSON value received, flattened: a body that is an array counts as its items.
    pub fn events(&self) -> Vec<Value> {
        let bodies = self.state.bodies.lock().unwrap();
        bodies
            .iter()
            .flat_map(|b| match b {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            })
            .collect()
    }
}

fn serve(stream: TcpStream, state: &State) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let get = line.starts_with("GET ");
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if get {
            let body = serde_json::to_string(&*state.counted.lock().unwrap()).unwrap_or_default();
            let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            if writer.write_all(response.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        std::thread::sleep(state.delay);
        state.requests.fetch_add(1, Ordering::SeqCst);
        if state.counting {
            let response: &[u8] = match count(&body) {
                Some(n) => {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
                    let mut counted = state.counted.lock().unwrap();
                    counted.events += n;
                    counted.requests += 1;
                    if counted.first == 0.0 {
                        counted.first = now;
                    }
                    counted.last = now;
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                }
                None => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 8\r\n\r\nnot json",
            };
            if writer.write_all(response).is_err() {
                return;
            }
            continue;
        }
        let fail =
            state.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let response: &[u8] = if fail {
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail"
        } else {
            match serde_json::from_slice::<Value>(&body) {
                Ok(v) => {
                    state.bodies.lock().unwrap().push(v);
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                }
                Err(_) => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 8\r\n\r\nnot json",
            }
        };
        if writer.write_all(response).is_err() {
            return;
        }
    }
}

/// Events in a body: the items of a JSON array, or 1 for any other JSON value; None if not JSON.
fn count(body: &[u8]) -> Option<u64> {
    if let Ok(items) = serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body) {
        return Some(items.len() as u64);
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body).ok().map(|_| 1)
}
