//! A stand-in xfer peer: an HTTP/1.1 server on loopback that takes `POST /api/xfer/inject/v1`
//! (answering a fresh id), and the batch form only if told to (otherwise 404, like a KumoMTA
//! node). It records each request's path and how many messages it carried.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRequest {
    pub path: String,
    /// Messages in the body (0 when refused unread).
    pub messages: usize,
    pub authorization: Option<String>,
}

pub struct StubPeer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<PeerRequest>>>,
}

impl StubPeer {
    pub fn start(batch: bool) -> StubPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stub peer");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve(stream, batch, log));
            }
        });
        StubPeer { addr, requests }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<PeerRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, batch: bool, log: Arc<Mutex<Vec<PeerRequest>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    let mut counter = 0u64;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let (mut length, mut gzip, mut authorization) = (0usize, false, None);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "content-encoding" => gzip = v.trim().eq_ignore_ascii_case("gzip"),
                "authorization" => authorization = Some(v.trim().to_string()),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let plain = if gzip {
            let mut p = Vec::new();
            flate2::read::GzDecoder::new(body.as_slice()).read_to_end(&mut p).unwrap();
            p
        } else {
            body
        };
        let mut fresh_id = || {
            counter += 1;
            format!("stub-{}-{counter}", std::process::id())
        };
        let (status, reply, messages) = match path.as_str() {
            "/api/xfer/inject/v1" => (200, serde_json::json!({"id": fresh_id()}).to_string(), 1),
            "/api/xfer/inject-batch/v1" if batch => {
                let n = count_batch(&plain);
                let results: Vec<_> = (0..n).map(|_| serde_json::json!({"id": fresh_id()})).collect();
                (200, serde_json::json!({"results": results}).to_string(), n)
            }
            _ => (404, "{\"error\":\"not found\"}".to_string(), 0),
        };
        log.lock().unwrap().push(PeerRequest { path, messages, authorization });
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            if status == 200 { "OK" } else { "Not Found" },
            reply.len()
        );
        if out.write_all(head.as_bytes()).and_then(|()| out.write_all(reply.as_bytes())).is_err() {
            return;
        }
    }
}

/// Messages in a batch body: JSON line with `size`, then that many bytes, repeated.
fn count_batch(mut plain: &[u8]) -> usize {
    let mut n = 0;
    while let Some(nl) = plain.iter().position(|b| *b == b'\n') {
        let line: serde_json::Value = serde_json::from_slice(&plain[..nl]).expect("batch JSON line");
        let size = line["size"].as_u64().expect("batch line has size") as usize;
        plain = &plain[nl + 1 + size..];
        n += 1;
    }
    n
}
