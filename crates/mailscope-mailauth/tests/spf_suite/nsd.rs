//! A throw-away NSD serving one root zone, and the query-dropping UDP forwarder the suite's
//! TIMEOUT entries need.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const NSD: &str = "/usr/sbin/nsd";

/// One NSD instance in a temporary directory; stopped (SIGTERM to the process we started)
/// on drop.
pub struct Nsd {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
    pub log: PathBuf,
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(u) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(a) = u.local_addr() else { continue };
        if TcpListener::bind(("127.0.0.1", a.port())).is_ok() {
            return a.port();
        }
    }
    panic!("no free port on 127.0.0.1");
}

impl Nsd {
    /// Starts NSD with `zone` as the root zone and waits until it answers.
    pub fn start(zone: &str) -> Result<Nsd, String> {
        if !std::path::Path::new(NSD).exists() {
            return Err(format!(
                "{NSD} is missing: install Debian's nsd (bash scripts/peers install does)"
            ));
        }
        let mut last = String::new();
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let d = dir.path().to_path_buf();
            std::fs::write(d.join("root.zone"), zone).map_err(|e| e.to_string())?;
            let port = free_port();
            let conf = format!(
                "server:\n    ip-address: 127.0.0.1@{port}\n    do-ip6: no\n    username: \"\"\n    chroot: \"\"\n    zonesdir: \"{z}\"\n    database: \"\"\n    zonelistfile: \"{z}/zone.list\"\n    xfrdfile: \"{z}/xfrd.state\"\n    xfrdir: \"{z}\"\n    pidfile: \"{z}/nsd.pid\"\n    logfile: \"{z}/nsd.log\"\n    log-only-syslog: no\n    verbosity: 0\n    server-count: 1\n    zonefiles-write: 0\n    rrl-ratelimit: 0\n    rrl-whitelist-ratelimit: 0\nremote-control:\n    control-enable: no\nzone:\n    name: \".\"\n    zonefile: \"root.zone\"\n",
                z = d.display()
            );
            std::fs::write(d.join("nsd.conf"), conf).map_err(|e| e.to_string())?;
            let child = Command::new(NSD)
                .arg("-d")
                .arg("-c")
                .arg(d.join("nsd.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .env_remove("NOTIFY_SOCKET")
                .spawn()
                .map_err(|e| format!("cannot start {NSD}: {e}"))?;
            let mut nsd = Nsd {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child,
                _dir: dir,
                log: d.join("nsd.log"),
            };
            match nsd.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(nsd),
                Err(e) => {
                    last = format!(
                        "{e}; nsd log: {}",
                        std::fs::read_to_string(&nsd.log).unwrap_or_default()
                    );
                    if !last.contains("in use") {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        // SOA query for the root.
        let q: [u8; 17] = [0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1];
        let mut buf = [0u8; 1500];
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nsd exited with {status}"));
            }
            let _ = sock.send_to(&q, self.addr);
            if let Ok((n, _)) = sock.recv_from(&mut buf)
                && n >= 4
                && buf[0] == 0x12
                && buf[3] & 0x0f == 0
            {
                return Ok(());
            }
        }
        Err("nsd did not answer within 10 s".into())
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The query name (lower-cased, without the trailing dot) and type of a DNS message.
fn question(msg: &[u8]) -> Option<(String, u16)> {
    let mut i = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = *msg.get(i)? as usize;
        if len == 0 {
            break;
        }
        let label = msg.get(i + 1..i + 1 + len)?;
        labels.push(String::from_utf8_lossy(&label.to_ascii_lowercase()).into_owned());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i + 1)?, *msg.get(i + 2)?]);
    Some((labels.join("."), qtype))
}

/// A stand-in DNS responder in front of NSD, and the only one in the suite: the RFC test
/// suite's TIMEOUT entries mean "this name never answers", which no authoritative server
/// can be told to do. It drops every UDP query for those names — except for the record types
/// the scenario gives them data of, which is how the suite says "TXT answers but the SPF
/// type times out" — and relays the rest to NSD unchanged (TCP, used only for truncated
/// answers, is relayed as a byte stream).
pub struct Dropper {
    pub addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Dropper {
    /// `drop_names`: name → the record types that still answer.
    pub fn start(
        upstream: SocketAddr,
        drop_names: HashMap<String, HashSet<u16>>,
    ) -> Result<Dropper, String> {
        let (udp, tcp, addr) = (0..100)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let addr = udp.local_addr().ok()?;
                let tcp = TcpListener::bind(addr).ok()?;
                Some((udp, tcp, addr))
            })
            .ok_or("no free port for the forwarder")?;
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_u = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while !stop_u.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                let query = buf[..n].to_vec();
                if let Some((name, qtype)) = question(&query)
                    && let Some(answering) = drop_names.get(&name)
                    && !answering.contains(&qtype)
                {
                    continue;
                }
                let Ok(up) = udp.try_clone() else { continue };
                std::thread::spawn(move || {
                    let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
                        return;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    if s.send_to(&query, upstream).is_err() {
                        return;
                    }
                    let mut b = [0u8; 65535];
                    if let Ok((m, _)) = s.recv_from(&mut b) {
                        let _ = up.send_to(&b[..m], from);
                    }
                });
            }
        });
        let stop_t = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop_t.load(std::sync::atomic::Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((client, _)) => {
                        std::thread::spawn(move || {
                            let _ = client.set_nonblocking(false);
                            let Ok(server) = std::net::TcpStream::connect(upstream) else {
                                return;
                            };
                            let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone())
                            else {
                                return;
                            };
                            let t = std::thread::spawn(move || {
                                let _ = std::io::copy(&mut c2, &mut s2);
                            });
                            let (mut c, mut s) = (client, server);
                            let _ = std::io::copy(&mut s, &mut c);
                            let _ = t.join();
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Dropper { addr, stop })
    }
}

impl Drop for Dropper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
