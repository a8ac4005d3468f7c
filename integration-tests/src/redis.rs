//! A real `redis-server` for the cluster tests: loopback only, a free port picked here, no
//! persistence, stopped on drop. `stop` and `resume` take it away and bring it back on the same
//! port (Redis going down mid-run).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::wait::wait_until;

pub struct RedisServer {
    dir: TempDir,
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = tempfile::Builder::new().prefix("ferry-redis-").tempdir().expect("tempdir");
        let mut server = RedisServer { dir, child: None, port };
        server.resume();
        server
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Start (again) on the same port.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): the cluster tests need Debian's redis-server package \
                     (sudo apt-get install -y redis-server, or run `cargo xtask test`, which installs it)"
                )
            });
        self.child = Some(child);
        wait_until("redis-server to answer PING", Duration::from_secs(10), || {
            (self.command(&["PING"]).ok()? == "+PONG").then_some(())
        });
    }

    /// Kill it (the data goes with it: nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One command; the first line of the reply (`+PONG`, `:3`, `$5`...).
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok(line.trim_end().to_string())
    }

    /// An integer reply (`ZCARD key`, ...).
    pub fn integer(&self, args: &[&str]) -> i64 {
        let reply = self.command(args).expect("redis reachable");
        reply.strip_prefix(':').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{args:?}: {reply}"))
    }

    /// `INFO commandstats` as text (calls per command: the round trips the nodes made).
    pub fn info(&self, section: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("redis reachable");
        s.write_all(format!("*2\r\n$4\r\nINFO\r\n${}\r\n{section}\r\n", section.len()).as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut len = String::new();
        r.read_line(&mut len).unwrap();
        let n: usize = len.trim_start_matches('$').trim().parse().unwrap_or(0);
        let mut body = vec![0; n];
        std::io::Read::read_exact(&mut r, &mut body).unwrap();
        String::from_utf8_lossy(&body).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
