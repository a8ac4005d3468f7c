//! A loopback DNS server that answers every query with NXDOMAIN, so tests can exercise MX lookups
//! of names that do not exist without sending a packet off the machine.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct NxDomainDns {
    addr: SocketAddr,
    queries: Arc<AtomicU64>,
}

impl NxDomainDns {
    pub fn start() -> NxDomainDns {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind DNS stub");
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicU64::new(0));
        let counter = queries.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                if let Some(reply) = nxdomain(&buf[..n]) {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        NxDomainDns { addr, queries }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// The query's header and first question, turned into an authoritative NXDOMAIN answer.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) == 0 {
        return None;
    }
    let mut pos = 12;
    while *query.get(pos)? != 0 {
        pos += 1 + *query.get(pos)? as usize;
    }
    let question_end = pos + 1 + 4;
    let mut reply = query.get(..question_end)?.to_vec();
    reply[2] = 0x80 | (query[2] & 0x79) | 0x04; // QR, opcode and RD kept, AA
    reply[3] = 0x80 | 0x03; // RA, RCODE = NXDOMAIN
    reply[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question, no records
    Some(reply)
}
