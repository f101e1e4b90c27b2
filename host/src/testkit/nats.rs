//! A real `nats-server` with JetStream for tests: an ephemeral port, a
//! temporary store directory, killed and cleaned up on drop.
//!
//! ```no_run
//! # async fn demo() {
//! use aether_host::testkit::nats::NatsServer;
//! let mut server = NatsServer::start();
//! let client = server.client().await;
//! server.restart(); // same port, same store directory
//! # }
//! ```
//!
//! The binary is `$AETHER_NATS_SERVER`, else the one `cargo xtask
//! install-nats` puts in `~/.cache/aether-tools`, else `nats-server` on the
//! `PATH`.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The version `cargo xtask install-nats` installs.
const PINNED_VERSION: &str = "2.15.1";

/// How long a server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(15);

/// A running `nats-server -js` of this test's own.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    /// Holds `store/` (JetStream), `ports/` and `server.log`; removed on drop.
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream on an ephemeral port.
    ///
    /// # Panics
    ///
    /// If no `nats-server` binary is found (with the hint to install one), or
    /// the server does not accept connections in time (with its log).
    pub fn start() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let binary = find_binary();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "aether-nats-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("store")).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut server = Self { binary, dir, port: 0, child: None };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The JetStream store directory; it survives [`restart`](Self::restart).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// A client that reconnects quickly (every 100 ms) after a restart.
    ///
    /// # Panics
    ///
    /// If the server cannot be reached.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .reconnect_delay_callback(|_| Duration::from_millis(100))
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url()))
    }

    /// True while the server process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL: a crash of the process, not of the machine,
    /// so written data survives in the OS). Clients see the connection drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs, then starts it again on the same port and
    /// store directory.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts the process on `self.port` (0: any free port) and waits until
    /// it accepts connections.
    fn spawn(&mut self) {
        let ports = self.dir.join("ports");
        let _ = std::fs::remove_dir_all(&ports);
        std::fs::create_dir_all(&ports).unwrap_or_else(|e| panic!("cannot create {}: {e}", ports.display()));
        let port = if self.port == 0 { "-1".to_owned() } else { self.port.to_string() };
        let log = self.dir.join("server.log");
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port])
            .arg("-sd")
            .arg(self.store_dir())
            .arg("--ports_file_dir")
            .arg(&ports)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                panic!("nats-server exited with {status} while starting; its log:\n{}", self.log());
            }
            if let Some(port) = read_ports_file(&ports) {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    self.port = port;
                    return;
                }
            }
            if started.elapsed() > STARTUP {
                self.stop();
                panic!("nats-server did not accept connections within {STARTUP:?}; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_else(|e| format!("(no log: {e})"))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The client port from the ports file the server writes once it listens:
/// `{"nats":["nats://127.0.0.1:PORT"], ...}`.
fn read_ports_file(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir).ok()?.flatten().next()?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = ports.get("nats")?.get(0)?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// The `nats-server` binary to run.
///
/// # Panics
///
/// If there is none, with the command that installs one.
pub fn find_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("AETHER_NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "AETHER_NATS_SERVER={} is not a file; run `cargo xtask install-nats`", path.display());
        return path;
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cached =
            PathBuf::from(home).join(format!(".cache/aether-tools/nats-server-{PINNED_VERSION}/bin/nats-server"));
        if cached.is_file() {
            return cached;
        }
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file());
    on_path.unwrap_or_else(|| {
        panic!("no nats-server found (AETHER_NATS_SERVER, ~/.cache/aether-tools, PATH); run `cargo xtask install-nats`")
    })
}
