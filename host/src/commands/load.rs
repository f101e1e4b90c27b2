//! `aether-host load <model.wasm>`: host a model on one machine until Ctrl-C.

use super::nats_args::NatsArgs;
use super::otlp::{Exporter, OtlpArgs};
use aether_host::api::ClusterCommands;
use aether_host::api::nats::NatsApiConfig;
use aether_host::api::{self, ApiConfig, ClusterDoor, HttpToken, ShardServer, TlsConfig};
use aether_host::bus::{Bus, BusConfig};
use aether_host::cluster::{Cluster, ClusterConfig, DriverConfig, NodeId, Rollout};
use aether_host::flow::{EmbeddedViews, FlowConfig, Flows, JetStreamViews, MemoryViews, ViewStore};
use aether_host::names::NatsNames;
use aether_host::store::{EmbeddedStore, JetStreamEventStore, MemoryStore};
use aether_host::wasm::MemoryLayout;
use aether_host::{
    ActorConfig, AdmissionConfig, AetherEngine, DomainComponent, EngineConfig, EventStore, Runtime, RuntimeConfig,
};
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Hosts a model: validates the component, prints its EventStorming model,
/// and serves the HTTP API until Ctrl-C (or SIGTERM).
///
/// Events go to an embedded, crash-safe file store under `--data`; an
/// answered command is on disk. With `--nats URL` they go to NATS JetStream
/// instead, every stored event is published on the NATS bus, commands are
/// served over NATS request/reply too, and the host joins the cluster of the
/// model's domain: hosts sharing one NATS split the actors between them by
/// shard, and each forwards what another serves (see `GET /cluster`). On Ctrl-C the host stops accepting requests, lets commands in
/// flight finish, flushes the store and exits.
///
/// Talk to it with `aether-host send|state|events|model`, or with curl:
///
///   curl -X POST localhost:7070/actors/Account/alice/commands/Open -d '{"owner":"Alice"}'
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct LoadCommand {
    /// The component, e.g. target/wasm32-wasip2/release/bank.wasm.
    model: PathBuf,
    /// Directory of the embedded event store (created if missing).
    #[arg(long, env = "AETHER_DATA", default_value = "aether-data")]
    data: PathBuf,
    /// Keep events in memory only; they are gone when the host stops.
    #[arg(long, conflicts_with_all = ["data", "nats"])]
    memory: bool,
    #[command(flatten)]
    nats: NatsArgs,
    /// With --nats, serve every actor without joining a cluster: several such
    /// hosts on one JetStream are kept apart only by the store's
    /// expected-version check (conflicts, `409` when retries run out).
    #[arg(long, requires = "nats")]
    no_cluster: bool,
    /// This host's name in its cluster (with --nats); unique per process by
    /// default. Give a restarted host its old id to have it back at once
    /// after a clean stop.
    #[arg(long, env = "AETHER_NODE_ID", requires = "nats")]
    node_id: Option<String>,
    /// Shards of a new cluster (a cluster keeps the count it was created with).
    #[arg(long, default_value_t = ClusterConfig::default().shards, requires = "nats")]
    shards: u32,
    /// How often a cluster member renews its membership (and the leader its
    /// claim), in milliseconds. All nodes of a cluster should agree.
    #[arg(long, default_value_t = ClusterConfig::default().heartbeat_interval.as_millis() as u64, requires = "nats")]
    heartbeat_ms: u64,
    /// How long a member may serve after its last acknowledged renewal (and
    /// the leader act), in milliseconds: shorter fences a node cut off from
    /// NATS sooner; it must stay below the failure timeout.
    #[arg(long, default_value_t = ClusterConfig::default().member_lease.as_millis() as u64, requires = "nats")]
    lease_ms: u64,
    /// How long the leader waits for a silent member (or the others for a
    /// silent leader) before giving its shards away, in milliseconds: about
    /// the failover time after a crash. At least lease × 1.05 + heartbeat.
    #[arg(long, default_value_t = ClusterConfig::default().failure_timeout.as_millis() as u64, requires = "nats")]
    failure_timeout_ms: u64,
    /// How long a command waits for its shard to be served (during a handoff
    /// or a failover) before it is answered `503`, in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    shard_wait_ms: u64,
    /// Address to serve the HTTP API on; port 0 picks a free one.
    #[arg(long, env = "AETHER_LISTEN", default_value = "127.0.0.1:7070")]
    listen: String,
    /// Require `Authorization: Bearer <TOKEN>` on every HTTP route but
    /// `GET /healthz` (which load balancers probe without credentials).
    #[arg(long, env = "AETHER_HTTP_TOKEN", hide_env_values = true, conflicts_with = "http_token_file")]
    http_token: Option<String>,
    /// As --http-token, with the token read from a file (trailing newline ignored).
    #[arg(long, env = "AETHER_HTTP_TOKEN_FILE")]
    http_token_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "AETHER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "AETHER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Largest command body accepted, in bytes; larger ones get `413`.
    #[arg(long, default_value_t = ApiConfig::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Commands the HTTP door (and, separately, the NATS door) runs at once;
    /// more are answered `503 overloaded` with `Retry-After`.
    #[arg(long, default_value_t = ApiConfig::default().max_in_flight_commands)]
    max_in_flight_commands: usize,
    /// Actors being activated (snapshot and replay) at once.
    #[arg(long, default_value_t = AdmissionConfig::default().max_activations)]
    max_activations: usize,
    /// Time-travel reads (`?at_version=`) replaying at once.
    #[arg(long, default_value_t = AdmissionConfig::default().max_time_travels)]
    max_time_travels: usize,
    /// Live actors kept in memory; the least recently used beyond it are passivated.
    #[arg(long, default_value_t = RuntimeConfig::default().max_live_actors)]
    max_live_actors: usize,
    /// Seconds an actor may stay unused before it is passivated.
    #[arg(long, default_value_t = RuntimeConfig::default().idle_timeout.as_secs())]
    idle_timeout_s: u64,
    /// Times a command is decided again after meeting another writer's events
    /// before it is answered `409`.
    #[arg(long, default_value_t = ActorConfig::default().conflict_retries)]
    conflict_retries: u32,
    /// Snapshot an actor every this many events (0: never).
    #[arg(long, default_value_t = ActorConfig::default().snapshot_every)]
    snapshot_every: u64,
    /// Store each command (name and payload) beside its events, so that
    /// `aether-host verify` can decide it again with new code. Turn off
    /// where command payloads must not be kept: those commands are then
    /// not re-decidable (their events still replay).
    #[arg(long, env = "AETHER_RECORD_COMMANDS", default_value_t = ActorConfig::default().record_commands, action = clap::ArgAction::Set)]
    record_commands: bool,
    /// Memory one actor's VM may use, in MiB.
    #[arg(long, default_value_t = EngineConfig::default().max_memory_bytes >> 20)]
    guest_memory_mib: usize,
    /// The longest one guest call may run, in milliseconds.
    #[arg(long, default_value_t = EngineConfig::default().call_timeout.as_millis() as u64)]
    guest_timeout_ms: u64,
    /// The longest one guest call may hold a thread that also serves I/O, in
    /// milliseconds; an actor whose call needs longer runs its calls on
    /// threads of their own from then on.
    #[arg(long, default_value_t = EngineConfig::default().inline_budget.as_millis() as u64)]
    guest_inline_ms: u64,
    /// Guest calls that may run on threads of their own at once (slow or
    /// spinning guests); more wait their turn.
    #[arg(long, default_value_t = EngineConfig::default().max_offloaded_calls)]
    guest_threads: usize,
    /// How guests' memories sit in the pool: `dense` (no guard pages, no
    /// per-actor mappings, the most actors; explicit bounds checks with a
    /// Spectre guard) or `guarded` (guard pages and hardware traps; each live
    /// actor maps about four regions, so `vm.max_map_count` caps the actors).
    #[arg(long, default_value = "dense", value_parser = ["dense", "guarded"])]
    guest_memory_layout: String,
    #[command(flatten)]
    otlp: OtlpArgs,
}

impl LoadCommand {
    /// The span exporter of --otlp-endpoint, if given, started before the
    /// subscriber is installed (its layer goes in the subscriber). Fixes
    /// this node's id now if none was given, so the spans' resource and
    /// the cluster name the same node.
    ///
    /// # Errors
    ///
    /// An endpoint that is not a URL.
    pub fn exporter(&mut self) -> anyhow::Result<Option<Exporter>> {
        let Some(endpoint) = &self.otlp.otlp_endpoint else { return Ok(None) };
        let node = self.node_id.get_or_insert_with(|| default_node_id().to_string());
        Exporter::start(endpoint, node).map(Some)
    }

    pub fn execute(self) -> anyhow::Result<()> {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(self.run())
    }

    async fn run(self) -> anyhow::Result<()> {
        if self.nats.nats.is_some() && !self.no_cluster {
            self.cluster_config()?;
        }
        let max_live_actors = self.max_live_actors.max(1);
        let engine = AetherEngine::new(
            EngineConfig::default()
                .with_max_memory_bytes(self.guest_memory_mib << 20)
                // Room for every live actor plus scratch VMs (time travel, fault isolation).
                .with_max_instances(u32::try_from(max_live_actors + 256).context("--max-live-actors is too large")?)
                .with_call_timeout(Duration::from_millis(self.guest_timeout_ms.max(1)))
                .with_inline_budget(Duration::from_millis(self.guest_inline_ms.max(1)))
                .with_max_offloaded_calls(self.guest_threads.max(1))
                .with_layout(if self.guest_memory_layout == "guarded" {
                    MemoryLayout::Guarded
                } else {
                    MemoryLayout::Dense
                }),
        )?;
        let component = compile(&engine, &self.model).await?;
        println!("{}\nsha-256 {}", self.model.display(), component.hash());
        print!("{}", component.model());

        let domain = component.model().name.clone();
        let Backend { store, embedded, nats, views } = self.open_store(&domain).await?;
        let names = NatsNames::new(self.nats.namespace.as_deref());
        let bus = match &nats {
            Some(client) => Bus::with_nats(&domain, &BusConfig::default(), client.clone(), names.clone()),
            None => Bus::local(&domain, &BusConfig::default()),
        };
        let config = RuntimeConfig::default()
            .with_actor(
                ActorConfig::default()
                    .with_snapshot_every(self.snapshot_every)
                    .with_conflict_retries(self.conflict_retries)
                    .with_record_commands(self.record_commands),
            )
            .with_max_live_actors(max_live_actors)
            .with_idle_timeout(Duration::from_secs(self.idle_timeout_s.max(1)))
            .with_admission(
                AdmissionConfig::default()
                    .with_max_activations(self.max_activations)
                    .with_max_time_travels(self.max_time_travels),
            );
        let runtime = Runtime::with_bus(component, store.clone(), config, bus);
        let (cluster, rollout) = match &nats {
            Some(client) if !self.no_cluster => {
                let node_id = match &self.node_id {
                    Some(id) => NodeId::parse(id).context("--node-id")?,
                    None => default_node_id(),
                };
                // Before joining: a node serves the cluster's component, not
                // the file it was started with if the cluster moved on.
                let rollout = self.follow_components(client, &names, &node_id, &runtime).await?;
                (Some(self.join(client, &runtime, node_id).await?), Some(rollout))
            }
            _ => (None, None),
        };

        let token = self.http_token()?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig::from_pem_files(cert, key)?),
            _ => None,
        };
        let listener = tokio::net::TcpListener::bind(&self.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.listen))?;
        let stop = CancellationToken::new();
        tokio::spawn(shutdown_signal(stop.clone()));
        // Policies and read models run on one host: here, or in a cluster
        // on the leader, sending their commands where their shards are.
        let flows = match &cluster {
            None => Flows::start(runtime.clone(), views, FlowConfig::default(), stop.child_token()),
            Some((door, _)) => {
                let sink = Arc::new(ClusterCommands::new(runtime.clone(), door.clone()));
                let leading = leading(door.cluster.clone(), stop.clone());
                let config = FlowConfig::default();
                Flows::start_with(runtime.clone(), views, sink, Some(leading), config, stop.child_token())
            }
        };
        let nats_api = nats.clone().map(|client| {
            let cluster = cluster.clone();
            let (runtime, stop, names) = (runtime.clone(), stop.clone(), names.clone());
            let config = NatsApiConfig::default()
                .with_max_body_bytes(self.max_body_bytes)
                .with_max_in_flight(self.max_in_flight_commands)
                .with_cluster(cluster.as_ref().map(|(door, _)| door.clone()))
                .with_trace_spans(self.otlp.otlp_endpoint.is_some());
            tokio::spawn(async move { api::nats::serve(client, names, runtime, config, stop.cancelled_owned()).await })
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("listening on {scheme}://{}", listener.local_addr()?);
        if nats.is_some() {
            println!("commands over NATS on {}", names.commands(&domain, "<aggregate>"));
        }
        let api = ApiConfig::default()
            .with_max_body_bytes(self.max_body_bytes)
            .with_max_in_flight_commands(self.max_in_flight_commands)
            .with_token(token)
            .with_tls(tls)
            .with_cluster(cluster.as_ref().map(|(door, _)| door.clone()))
            .with_rollout(rollout)
            .with_trace_spans(self.otlp.otlp_endpoint.is_some())
            .with_flows(Some(flows.clone()));
        let http = api::serve(listener, runtime.clone(), api, stop.clone().cancelled_owned()).await;
        stop.cancel();
        if let Some(nats_api) = nats_api {
            nats_api.await.context("the NATS command API failed")?.context("the NATS command API failed")?;
        }
        http.context("the HTTP server failed")?;
        if let Some((door, server)) = cluster {
            // Hand every shard on (draining what runs here) before going.
            eprintln!("aether-host: leaving the cluster; handing shards on");
            if door.cluster.leave(Duration::from_secs(30)).await.is_err() {
                eprintln!("aether-host: the leave did not finish in 30 s; the cluster will expel this node");
            }
            server.close().await;
        }
        if let Some(client) = nats {
            // Publishes and replies still buffered go out before the exit.
            let _ = client.flush().await;
        }

        flows.stopped().await;
        eprintln!("aether-host: commands finished; flushing the event store");
        drop((runtime, store));
        if let Some(store) = embedded {
            close(store).await?;
        }
        eprintln!("aether-host: stopped");
        Ok(())
    }
}

impl LoadCommand {
    /// Joins the cluster of the model's domain and namespace.
    async fn join(
        &self,
        client: &async_nats::Client,
        runtime: &Runtime,
        node_id: NodeId,
    ) -> anyhow::Result<(ClusterDoor, Arc<ShardServer>)> {
        let domain = runtime.domain().to_string();
        let names = NatsNames::new(self.nats.namespace.as_deref()).cluster(&domain);
        let mut config = DriverConfig::new(node_id.clone(), names);
        config.protocol = self.cluster_config()?;
        config.kv_replicas = self.nats.js_replicas;
        let trace_spans = self.otlp.otlp_endpoint.is_some();
        let server = ShardServer::new(runtime.clone(), client.clone(), self.max_in_flight_commands, trace_spans);
        let cluster = Cluster::join(client.clone(), runtime.clone(), server.clone(), config)
            .await
            .context("cannot join the cluster")?;
        server.attach(cluster.clone());
        println!("cluster: node {node_id} of {domain} (GET /cluster)");
        let mut door = ClusterDoor::new(cluster, client.clone());
        door.wait = Duration::from_millis(self.shard_wait_ms.max(1));
        Ok((door, server))
    }

    /// Publishes this node's component as the cluster's if it has none,
    /// else moves to the cluster's; then follows it (live upgrades).
    async fn follow_components(
        &self,
        client: &async_nats::Client,
        names: &NatsNames,
        node_id: &NodeId,
        runtime: &Runtime,
    ) -> anyhow::Result<Rollout> {
        let wasm = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let rollout = Rollout::start(
            client.clone(),
            names.clone(),
            node_id.as_str(),
            runtime.clone(),
            &wasm,
            self.nats.js_replicas,
        )
        .await
        .context("cannot follow the cluster's component")?;
        let running = runtime.component();
        if **running.hash() != *hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm)) {
            println!("cluster component: sha-256 {} (the cluster's, not {})", running.hash(), self.model.display());
        }
        Ok(rollout)
    }

    /// The cluster's settings from the flags, checked.
    fn cluster_config(&self) -> anyhow::Result<ClusterConfig> {
        let ms = Duration::from_millis;
        let config = ClusterConfig::default()
            .with_shards(self.shards)
            .with_heartbeat_interval(ms(self.heartbeat_ms))
            .with_member_lease(ms(self.lease_ms))
            .with_failure_timeout(ms(self.failure_timeout_ms))
            .with_leader_renew(ms(self.heartbeat_ms))
            .with_leader_lease(ms(self.lease_ms))
            .with_leader_timeout(ms(self.failure_timeout_ms));
        config
            .validate()
            .context("the cluster's settings (--shards, --heartbeat-ms, --lease-ms, --failure-timeout-ms)")?;
        Ok(config)
    }

    /// The token of --http-token or --http-token-file, if either is given.
    fn http_token(&self) -> anyhow::Result<Option<HttpToken>> {
        let text = match (&self.http_token, &self.http_token_file) {
            (Some(token), _) => token.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the HTTP token from {}", path.display()))?,
            (None, None) => return Ok(None),
        };
        Ok(Some(HttpToken::new(&text)?))
    }
}

/// Whether this node leads its cluster, as it changes, until `stop`.
fn leading(cluster: aether_host::cluster::Cluster, stop: CancellationToken) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(cluster.status().is_leader);
    tokio::spawn(async move {
        let mut changes = cluster.changes();
        loop {
            tx.send_if_modified(|leads| {
                let now = cluster.status().is_leader;
                std::mem::replace(leads, now) != now
            });
            // Changes of view wake it; a lease running out shows within a second.
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    });
    rx
}

/// Where events go, and the handles shutdown needs.
struct Backend {
    store: Arc<dyn EventStore>,
    /// The embedded store by type too, to be closed (flushed) on exit.
    embedded: Option<Arc<EmbeddedStore>>,
    /// The NATS connection, with `--nats`.
    nats: Option<async_nats::Client>,
    /// Where policies and read models keep what they derive.
    views: Arc<dyn ViewStore>,
}

impl LoadCommand {
    async fn open_store(&self, domain: &str) -> anyhow::Result<Backend> {
        if let Some(url) = &self.nats.nats {
            let client = self.nats.connect(url).await?;
            let store = JetStreamEventStore::connect(client.clone(), domain, self.nats.store_config())
                .await
                .context("cannot open the JetStream event store")?;
            let ns = self.nats.namespace.as_deref().map(|ns| format!(", namespace {ns}")).unwrap_or_default();
            println!("event store: JetStream at {url}{ns}");
            let js = async_nats::jetstream::new(client.clone());
            let names = NatsNames::new(self.nats.namespace.as_deref());
            let views = JetStreamViews::open(&js, &names, domain, self.nats.store_config().replicas)
                .await
                .context("cannot open the views bucket")?;
            return Ok(Backend { store: Arc::new(store), embedded: None, nats: Some(client), views: Arc::new(views) });
        }
        if self.memory {
            println!("event store: in memory (lost on exit)");
            let views = Arc::new(MemoryViews::default());
            return Ok(Backend { store: Arc::new(MemoryStore::new()), embedded: None, nats: None, views });
        }
        let store = Arc::new(EmbeddedStore::open(&self.data).context("cannot open the event store")?);
        println!("event store: embedded, at {}", self.data.display());
        let views = Arc::new(EmbeddedViews::open(&self.data).context("cannot open the views store")?);
        Ok(Backend { store: store.clone(), embedded: Some(store), nats: None, views })
    }
}

/// `<hostname>-<6 hex digits>`: unique per process, readable in `/cluster`.
fn default_node_id() -> NodeId {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let host = if host.is_empty() { "aether" } else { host };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let host: String = host.chars().take(64).collect();
    NodeId::new(format!("{host}-{suffix}"))
}

/// Compiles the component off the async threads, saying so when it takes
/// more than a moment (Cranelift compiles the whole component up front).
async fn compile(engine: &Arc<AetherEngine>, path: &std::path::Path) -> anyhow::Result<DomainComponent> {
    let started = Instant::now();
    let task = tokio::task::spawn_blocking({
        let (engine, path) = (engine.clone(), path.to_owned());
        move || DomainComponent::from_file(&engine, &path)
    });
    tokio::pin!(task);
    let compiled = tokio::select! {
        compiled = &mut task => compiled,
        () = tokio::time::sleep(Duration::from_millis(500)) => {
            eprintln!("aether-host: compiling {} …", path.display());
            let compiled = task.await;
            eprintln!("aether-host: compiled in {:.1} s", started.elapsed().as_secs_f64());
            compiled
        }
    };
    compiled.context("the compile task failed")?.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Cancels `stop` on Ctrl-C (SIGINT) or SIGTERM. A second one exits at once.
async fn shutdown_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        tracing::warn!("cannot handle signals; the host stops only when killed");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("aether-host: shutting down; finishing commands in flight (Ctrl-C again to quit at once)");
    stop.cancel();
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("aether-host: stopped without waiting; answered commands are durable");
    std::process::exit(130);
}

/// Flushes and closes the embedded store once the runtime has let go of it.
async fn close(mut store: Arc<EmbeddedStore>) -> anyhow::Result<()> {
    // The idle sweeper may hold the runtime for a moment after it is dropped.
    for _ in 0..200 {
        match Arc::try_unwrap(store) {
            Ok(store) => return store.close().await.context("cannot close the event store"),
            Err(shared) => store = shared,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Still shared: the last holder's drop flushes it.
    Ok(())
}
