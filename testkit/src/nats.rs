//! A real `nats-server` with JetStream for tests: an ephemeral port, a
//! temporary store directory, killed and cleaned up on drop.
//!
//! ```no_run
//! # async fn demo() {
//! use aether_testkit::nats::NatsServer;
//! let mut server = NatsServer::start();
//! let client = server.client().await;
//! server.restart(); // same port, same store directory
//! # }
//! ```
//!
//! [`NatsCluster`] starts several such servers routed into one JetStream
//! cluster, any of which can be killed and restarted.
//!
//! The binary is `$AETHER_NATS_SERVER`, else the one `cargo xtask
//! install-nats` puts in `~/.cache/aether-tools`, else `nats-server` on the
//! `PATH`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(15);

/// A running `nats-server -js` of this test's own.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    /// Holds `store/` (JetStream), `ports/` and `server.log`; removed on drop.
    dir: PathBuf,
    /// The address it listens on: loopback unless [`start_on`](Self::start_on).
    ip: IpAddr,
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
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// As [`start`](Self::start), listening on `ip` (one of this machine's
    /// addresses, e.g. the root side of a veth pair that a network
    /// namespace reaches it through) instead of loopback.
    pub fn start_on(ip: IpAddr) -> Self {
        let binary = find_binary();
        let dir = temp_dir("nats");
        std::fs::create_dir_all(dir.join("store")).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut server = Self { binary, dir, ip, port: 0, child: None };
        server.spawn();
        server
    }

    /// `nats://<address>:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", SocketAddr::new(self.ip, self.port))
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
        let port = if self.port == 0 { "-1".to_owned() } else { self.port.to_string() };
        let mut command = Command::new(&self.binary);
        command.args(["-js", "-a", &self.ip.to_string(), "-p", &port]).arg("-sd").arg(self.store_dir());
        let (child, port) = launch(command, self.ip, &self.dir);
        self.child = Some(child);
        self.port = port;
    }
}

/// Runs a `nats-server` command (given everything but where its ports file
/// and log go, both in `dir`) and waits until it accepts connections;
/// returns the process and its client port.
///
/// # Panics
///
/// If it exits or does not accept connections within [`STARTUP`], with its log.
fn launch(mut command: Command, ip: IpAddr, dir: &Path) -> (Child, u16) {
    let ports = dir.join("ports");
    let _ = std::fs::remove_dir_all(&ports);
    std::fs::create_dir_all(&ports).unwrap_or_else(|e| panic!("cannot create {}: {e}", ports.display()));
    let log = dir.join("server.log");
    let mut child = command
        .arg("--ports_file_dir")
        .arg(&ports)
        .arg("-l")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
    let read_log = || std::fs::read_to_string(&log).unwrap_or_else(|e| format!("(no log: {e})"));
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nats-server exited with {status} while starting; its log:\n{}", read_log());
        }
        if let Some(port) = read_ports_file(&ports) {
            let addr = SocketAddr::new(ip, port);
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return (child, port);
            }
        }
        if started.elapsed() > STARTUP {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nats-server did not accept connections within {STARTUP:?}; its log:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A temporary directory of this process's own, unique per call.
fn temp_dir(kind: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "aether-{kind}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster of `nats-server -js` processes of this test's own, routed to
/// each other on loopback, each with its own store directory.
///
/// JetStream replicates what is created with replicas (`num_replicas: 3`),
/// and every server syncs each write to disk before acknowledging it
/// (`sync_interval: always`: the NATS docs' advice for losing nothing
/// acknowledged when servers fail together). Clients get every server's
/// URL ([`urls`](Self::urls)) and move to another when theirs goes. Any
/// server can be killed and restarted on its ports and store; all are
/// killed and their directory removed on drop.
///
/// ```no_run
/// # async fn demo() {
/// use aether_testkit::nats::NatsCluster;
/// let mut cluster = NatsCluster::start(3);
/// let client = cluster.client().await; // JetStream ready
/// cluster.stop(0); // SIGKILL one server of three
/// cluster.restart(0);
/// # }
/// ```
#[derive(Debug)]
pub struct NatsCluster {
    binary: PathBuf,
    /// One directory per server (`n0`, `n1`, …); removed on drop.
    dir: PathBuf,
    servers: Vec<Member>,
}

/// One server of a [`NatsCluster`].
#[derive(Debug)]
struct Member {
    /// Holds `server.conf`, `store/`, `ports/` and `server.log`.
    dir: PathBuf,
    /// The client port; 0 until the first start picks one.
    port: u16,
    /// The route port, chosen before any server starts (every server's
    /// config names all of them).
    route_port: u16,
    child: Option<Child>,
}

/// The name of the cluster the servers form.
const CLUSTER_NAME: &str = "aether-test";

impl NatsCluster {
    /// Starts `servers` servers (3 for a quorum that survives one loss)
    /// and waits until each accepts connections; [`client`](Self::client)
    /// waits for JetStream to be ready.
    ///
    /// # Panics
    ///
    /// As [`NatsServer::start`].
    pub fn start(servers: usize) -> Self {
        let binary = find_binary();
        let dir = temp_dir("nats-cluster");
        let servers = (0..servers)
            .map(|i| Member { dir: dir.join(format!("n{i}")), port: 0, route_port: free_port(), child: None })
            .collect();
        let mut cluster = Self { binary, dir, servers };
        for i in 0..cluster.servers.len() {
            cluster.spawn(i);
        }
        cluster
    }

    /// How many servers the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether the cluster has no server.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// `nats://127.0.0.1:<port>` of every server, running or not.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|m| format!("nats://127.0.0.1:{}", m.port)).collect()
    }

    /// The process id of server `i` while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.servers[i].child.as_ref().map(Child::id)
    }

    /// True while server `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.servers[i].child.is_some()
    }

    /// A client given every server's URL, reconnecting quickly (every
    /// 100 ms) to whichever answers, once JetStream answers through it
    /// (a new cluster first elects its meta leader).
    ///
    /// # Panics
    ///
    /// If no server can be reached, or JetStream is not ready within 30 s.
    pub async fn client(&self) -> async_nats::Client {
        let running: Vec<String> =
            self.urls().into_iter().enumerate().filter(|(i, _)| self.is_running(*i)).map(|(_, u)| u).collect();
        let client = async_nats::ConnectOptions::new()
            .reconnect_delay_callback(|_| Duration::from_millis(100))
            .connection_timeout(Duration::from_secs(5))
            .connect(running.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {running:?}: {e}"));
        let js = async_nats::jetstream::new(client.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match js.query_account().await {
                Ok(_) => return client,
                Err(e) if Instant::now() >= deadline => panic!("JetStream not ready within 30 s: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Kills server `i` (SIGKILL); the others go on if a quorum is left.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops server `i` if it runs, then starts it again on the same
    /// ports and store; it catches up from the others by itself.
    ///
    /// # Panics
    ///
    /// As [`NatsServer::start`].
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        self.spawn(i);
    }

    fn spawn(&mut self, i: usize) {
        let member = &self.servers[i];
        std::fs::create_dir_all(member.dir.join("store"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", member.dir.display()));
        let routes: Vec<String> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, m)| format!("\"nats-route://127.0.0.1:{}\"", m.route_port))
            .collect();
        // A first start picks a free client port; a restart keeps it.
        let port = if member.port == 0 { "-1".to_owned() } else { member.port.to_string() };
        let config = format!(
            "server_name: \"n{i}\"\nhost: \"127.0.0.1\"\nport: {port}\n\
             jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n}}\n\
             cluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"127.0.0.1:{route}\"\n  routes: [{routes}]\n}}\n",
            store = member.dir.join("store").display(),
            route = member.route_port,
            routes = routes.join(", "),
        );
        let file = member.dir.join("server.conf");
        std::fs::write(&file, config).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        let mut command = Command::new(&self.binary);
        command.arg("-c").arg(&file);
        let (child, port) = launch(command, IpAddr::V4(Ipv4Addr::LOCALHOST), &member.dir);
        let member = &mut self.servers[i];
        member.child = Some(child);
        member.port = port;
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.stop(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port free on loopback now (the OS picks it; the server binds it soon after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
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
    if let Ok(cached) = aether_devtools::nats_server()
        && cached.is_file()
    {
        return cached;
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
