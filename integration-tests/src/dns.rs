//! A loopback DNS server, so tests can exercise MX, A and TXT lookups (MTA-STS) of test domains
//! without sending a packet off the machine: it answers the records it was given and NXDOMAIN for
//! every other name.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One record the stub serves.
#[derive(Debug, Clone)]
pub enum Rr {
    A(Ipv4Addr),
    Mx(u16, String),
    Txt(String),
}

impl Rr {
    fn rtype(&self) -> u16 {
        match self {
            Rr::A(_) => 1,
            Rr::Mx(..) => 15,
            Rr::Txt(_) => 16,
        }
    }

    fn rdata(&self) -> Vec<u8> {
        match self {
            Rr::A(ip) => ip.octets().to_vec(),
            Rr::Mx(pref, host) => {
                let mut out = pref.to_be_bytes().to_vec();
                out.extend(encode_name(host));
                out
            }
            Rr::Txt(text) => {
                text.as_bytes().chunks(255).flat_map(|c| [&[c.len() as u8][..], c].concat()).collect()
            }
        }
    }
}

/// Answers the records it was started with (name, record); NXDOMAIN for any other name.
pub struct DnsStub {
    addr: SocketAddr,
    queries: Arc<AtomicU64>,
}

impl DnsStub {
    /// A stub with no records: every name is NXDOMAIN.
    pub fn start() -> DnsStub {
        Self::with_records(Vec::new())
    }

    pub fn with_records(records: Vec<(&str, Rr)>) -> DnsStub {
        let records: Vec<(String, Rr)> = records
            .into_iter()
            .map(|(name, rr)| (name.trim_end_matches('.').to_ascii_lowercase(), rr))
            .collect();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind DNS stub");
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicU64::new(0));
        let counter = queries.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                if let Some(reply) = answer(&buf[..n], &records) {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        DnsStub { addr, queries }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend(label.as_bytes());
    }
    out.push(0);
    out
}

/// The query's header and first question, answered authoritatively: the records of that name and
/// type (none of the type = NODATA), or NXDOMAIN for a name with no records at all.
fn answer(query: &[u8], records: &[(String, Rr)]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) == 0 {
        return None;
    }
    let (mut pos, mut labels) = (12, Vec::new());
    while *query.get(pos)? != 0 {
        let len = *query.get(pos)? as usize;
        labels.push(String::from_utf8_lossy(query.get(pos + 1..pos + 1 + len)?).to_ascii_lowercase());
        pos += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos + 1)?, *query.get(pos + 2)?]);
    let question_end = pos + 1 + 4;
    let name = labels.join(".");
    let of_name: Vec<&Rr> = records.iter().filter(|(n, _)| *n == name).map(|(_, rr)| rr).collect();
    let answers: Vec<&Rr> = of_name.iter().copied().filter(|rr| rr.rtype() == qtype).collect();
    let mut reply = query.get(..question_end)?.to_vec();
    reply[2] = 0x80 | (query[2] & 0x79) | 0x04; // QR, opcode and RD kept, AA
    reply[3] = 0x80 | if of_name.is_empty() { 0x03 } else { 0 }; // RA, RCODE NXDOMAIN or NOERROR
    reply[4..12].copy_from_slice(&[0, 1, 0, answers.len() as u8, 0, 0, 0, 0]);
    for rr in answers {
        reply.extend([0xC0, 0x0C]); // the question's name
        reply.extend(rr.rtype().to_be_bytes());
        reply.extend(1u16.to_be_bytes()); // IN
        reply.extend(5u32.to_be_bytes()); // TTL
        let data = rr.rdata();
        reply.extend((data.len() as u16).to_be_bytes());
        reply.extend(data);
    }
    Some(reply)
}
