//! A throwaway `redis-server` for the cluster tests: a free loopback port, no persistence, stopped
//! (killed) when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::wait_until;

pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn redis_bin() -> PathBuf {
    let found = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            Command::new("sh")
                .args(["-c", "command -v redis-server"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        });
    found.unwrap_or_else(|| {
        panic!(
            "redis-server not found: the cluster tests need Debian's redis-server package \
             (sudo apt-get install redis-server; .ci/run installs it)"
        )
    })
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self::start_on(port)
    }

    /// On a given port (to bring a stopped server back where the nodes expect it).
    pub fn start_on(port: u16) -> RedisServer {
        let dir = tempfile::Builder::new().prefix("ferry-redis-").tempdir().expect("tempdir");
        let child = Command::new(redis_bin())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("redis-server accepts connections", Duration::from_secs(10), || {
            TcpStream::connect(addr).ok().map(|_| ())
        });
        RedisServer { child, addr, _dir: dir }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
