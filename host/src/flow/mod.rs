//! Policies and read models, hosted: each runs as a task of its own that
//! reads the store's ordered log of appends from its durable checkpoint.
//!
//! - **Feed.** A runner reads [`EventStore::read_log`](crate::store::EventStore::read_log) after its checkpoint,
//!   keeps the events its model lists (`reacts-to` / `consumes`), calls its
//!   guest on the batch, makes the effects durable, then writes the
//!   checkpoint. A crash in between reads the batch again: every effect is
//!   idempotent (see `policy` and `read_model`). Never the bus, which may drop.
//! - **Sandboxed.** Each runner has its own VM of the running component,
//!   called off the I/O threads (`spawn_blocking`), rebuilt after a fault
//!   and after an upgrade.
//! - **Backoff.** An unavailable store (log, views, or a command's target)
//!   is retried with growing pauses, the batch unconsumed.
//! - **Read-your-writes.** A command's answer carries the log position of
//!   its events; [`Flows::wait_for`] waits until a runner has passed it.
//! - **Once per cluster.** In a cluster, the runners run on the elected
//!   leader only (`leading`), their checkpoints and rows in the cluster's
//!   bucket, and a policy's commands go where their shards are served
//!   (a [`CommandSink`]); every node answers queries from the bucket.
//!
//! Layout: this file has the runners' shared loop and status; `policy` and
//! `read_model` what each does with a batch; `views` where they keep it.

mod policy;
mod read_model;
pub mod views;
mod vm;

pub use read_model::{Row, RowPage};
pub use views::{EmbeddedViews, JetStreamViews, MemoryViews, ViewStore};

use crate::actor::{ActorError, CommandOutcome};
use crate::runtime::{CommandRequest, Runtime};
use crate::store::{LoggedCommand, StoreError};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What became of a command a policy sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sent {
    Accepted {
        duplicate: bool,
    },
    Rejected {
        code: String,
        message: String,
    },
    /// The command cannot be taken, whatever is retried (unknown, undecodable,
    /// its target faulted): the fault of the input that sent it.
    Failed(String),
}

/// Where a policy's commands go: the runtime of this host, or in a cluster
/// the node serving each command's shard.
#[async_trait::async_trait]
pub trait CommandSink: Send + Sync + fmt::Debug + 'static {
    /// Runs the command.
    ///
    /// # Errors
    ///
    /// Whatever may pass if asked again (a store or node unavailable, a
    /// shard moving, overload): the runner retries with backoff.
    async fn send(&self, request: CommandRequest) -> Result<Sent, StoreError>;
}

/// Commands run by this host's runtime.
#[async_trait::async_trait]
impl CommandSink for Runtime {
    async fn send(&self, request: CommandRequest) -> Result<Sent, StoreError> {
        match self.execute(request).await {
            Ok(CommandOutcome::Accepted { duplicate, .. }) => Ok(Sent::Accepted { duplicate }),
            Ok(CommandOutcome::Rejected { code, message }) => Ok(Sent::Rejected { code, message }),
            Err(
                e @ (ActorError::Store(StoreError::Unavailable(_))
                | ActorError::Conflict { .. }
                | ActorError::Overloaded { .. }
                | ActorError::ShardMoved { .. }
                | ActorError::Unconfirmed { .. }),
            ) => Err(StoreError::Unavailable(e.to_string())),
            Err(other) => Ok(Sent::Failed(other.to_string())),
        }
    }
}

/// Tunables of the runners.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FlowConfig {
    /// Log entries read per batch.
    pub batch: usize,
    /// The pause between reads of a log that had nothing new; it doubles
    /// while nothing comes, up to `max_poll`. A query waiting for a position
    /// wakes the runner at once.
    pub poll: Duration,
    pub max_poll: Duration,
    /// The longest pause between retries of an unavailable store.
    pub max_backoff: Duration,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            poll: Duration::from_millis(10),
            max_poll: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What a runner hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Policy,
    ReadModel,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Policy => "policy",
            Kind::ReadModel => "read-model",
        }
    }
}

/// A runner's progress, for the API, metrics and read-your-writes.
#[derive(Debug)]
pub struct RunnerStatus {
    pub kind: Kind,
    pub name: String,
    /// The log position the runner has processed up to (durably).
    checkpoint: AtomicU64,
    /// The newest log position seen.
    head: AtomicU64,
    /// Every position up to this is processed (the checkpoint, or the head
    /// once a read after the checkpoint came back empty).
    caught_up: watch::Sender<u64>,
    /// Inputs parked with their error, and commands sent, rejected, events handled.
    parked: AtomicU64,
    sent: AtomicU64,
    rejected: AtomicU64,
    handled: AtomicU64,
    rebuild: AtomicBool,
    /// Whether the runner runs on this host now.
    running: AtomicBool,
    /// Wakes an idle runner: a query waits for a position it has not reached.
    wake: tokio::sync::Notify,
}

impl RunnerStatus {
    fn new(kind: Kind, name: &str) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            checkpoint: AtomicU64::new(0),
            head: AtomicU64::new(0),
            caught_up: watch::Sender::new(0),
            parked: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            rebuild: AtomicBool::new(false),
            running: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Log positions not yet processed (of the newest head the runner saw).
    pub fn lag(&self) -> u64 {
        self.head.load(Ordering::Relaxed).saturating_sub(*self.caught_up.borrow())
    }

    /// Every log position up to this one is processed.
    pub fn caught_up(&self) -> u64 {
        *self.caught_up.borrow()
    }

    pub fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Relaxed)
    }

    pub fn parked(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }

    /// As JSON, for `GET /policies` and `GET /read-models`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "kind": self.kind.label(),
            "running_here": self.running.load(Ordering::Relaxed),
            "checkpoint": self.checkpoint().to_string(),
            "caught_up": self.caught_up().to_string(),
            "lag": self.lag(),
            "parked": self.parked(),
            "events_handled": self.handled.load(Ordering::Relaxed),
            "commands_sent": self.sent.load(Ordering::Relaxed),
            "commands_rejected": self.rejected.load(Ordering::Relaxed),
        })
    }

    fn advance(&self, checkpoint: u64) {
        self.checkpoint.store(checkpoint, Ordering::Relaxed);
        self.head.fetch_max(checkpoint, Ordering::Relaxed);
        self.caught_up.send_if_modified(|c| {
            let moved = checkpoint > *c;
            *c = (*c).max(checkpoint);
            moved
        });
    }
}

/// Why [`Flows::wait_for`] or a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    #[error("the model has no {kind} `{name}` (it has: {known})")]
    Unknown { kind: &'static str, name: String, known: String },
    #[error("{kind} `{name}` has not reached position {position} within {waited:?} (it is at {at})")]
    Behind { kind: &'static str, name: String, position: u64, at: u64, waited: Duration },
    #[error("position {position} is past the log's head ({head}): no command was answered with it")]
    Unwritten { position: u64, head: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The hosted policies and read models of one runtime.
#[derive(Clone)]
pub struct Flows {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    views: Arc<dyn ViewStore>,
    sink: Arc<dyn CommandSink>,
    config: FlowConfig,
    runners: BTreeMap<(Kind, String), Arc<RunnerStatus>>,
    tasks: tokio_util::task::TaskTracker,
}

impl fmt::Debug for Flows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flows").field("runners", &self.inner.runners.keys().collect::<Vec<_>>()).finish()
    }
}

impl Flows {
    /// Starts a runner for every policy and read model of the runtime's
    /// model, each until `stop`, sending commands to the runtime.
    pub fn start(runtime: Runtime, views: Arc<dyn ViewStore>, config: FlowConfig, stop: CancellationToken) -> Self {
        let sink = Arc::new(runtime.clone());
        Self::start_with(runtime, views, sink, None, config, stop)
    }

    /// As [`start`](Self::start), sending commands to `sink`, and with
    /// `leading` running the runners only while it says `true` (in a
    /// cluster: while this node leads); queries are answered either way.
    pub fn start_with(
        runtime: Runtime,
        views: Arc<dyn ViewStore>,
        sink: Arc<dyn CommandSink>,
        leading: Option<watch::Receiver<bool>>,
        config: FlowConfig,
        stop: CancellationToken,
    ) -> Self {
        let model = runtime.model();
        let mut runners = BTreeMap::new();
        for policy in &model.policies {
            runners
                .insert((Kind::Policy, policy.name.clone()), Arc::new(RunnerStatus::new(Kind::Policy, &policy.name)));
        }
        for read_model in &model.read_models {
            let status = Arc::new(RunnerStatus::new(Kind::ReadModel, &read_model.name));
            runners.insert((Kind::ReadModel, read_model.name.clone()), status);
        }
        let tasks = tokio_util::task::TaskTracker::new();
        let flows = Self { inner: Arc::new(Inner { runtime, views, sink, config, runners, tasks }) };
        match leading {
            None => flows.spawn_runners(&stop),
            Some(leading) => {
                let supervisor = flows.clone();
                flows.inner.tasks.spawn(async move { supervisor.lead(leading, stop).await });
            }
        }
        flows.inner.tasks.close();
        flows
    }

    /// Runs every runner until `stop`.
    fn spawn_runners(&self, stop: &CancellationToken) {
        for status in self.inner.runners.values() {
            let (runner, status, stop) = (self.clone(), status.clone(), stop.clone());
            self.inner.tasks.spawn(async move {
                status.running.store(true, Ordering::Relaxed);
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = feed(&runner, &status) => {}
                }
                status.running.store(false, Ordering::Relaxed);
            });
        }
    }

    /// Runs the runners while `leading` says so, until `stop`.
    async fn lead(&self, mut leading: watch::Receiver<bool>, stop: CancellationToken) {
        let mut running: Option<CancellationToken> = None;
        loop {
            let lead = *leading.borrow_and_update();
            match (&running, lead) {
                (None, true) => {
                    tracing::info!("leading: running the policies and read models here");
                    let token = stop.child_token();
                    self.spawn_runners(&token);
                    running = Some(token);
                }
                (Some(token), false) => {
                    tracing::info!("no longer leading: stopping the policies and read models here");
                    token.cancel();
                    running = None;
                }
                _ => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                changed = leading.changed() => {
                    if changed.is_err() {
                        running.inspect(CancellationToken::cancel);
                        return;
                    }
                }
            }
        }
    }

    /// Waits for every runner to stop (after the token given to [`start`](Self::start)).
    pub async fn stopped(&self) {
        self.inner.tasks.wait().await;
    }

    /// Every runner's status.
    pub fn statuses(&self) -> impl Iterator<Item = &Arc<RunnerStatus>> {
        self.inner.runners.values()
    }

    /// The status of one runner.
    ///
    /// # Errors
    ///
    /// [`FlowError::Unknown`] if the model has no such runner.
    pub fn status(&self, kind: Kind, name: &str) -> Result<&Arc<RunnerStatus>, FlowError> {
        self.inner.runners.get(&(kind, name.to_owned())).ok_or_else(|| {
            let known: Vec<_> =
                self.inner.runners.keys().filter(|(k, _)| *k == kind).map(|(_, n)| n.as_str()).collect();
            let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            FlowError::Unknown { kind: kind.label(), name: name.to_owned(), known }
        })
    }

    /// Waits until the runner has processed every log position up to
    /// `position`, at most `wait`.
    ///
    /// # Errors
    ///
    /// [`FlowError::Behind`] if it has not by then; [`FlowError::Unwritten`]
    /// for a position the log has not reached (so no wait for what will
    /// never come); [`FlowError::Unknown`].
    pub async fn wait_for(&self, kind: Kind, name: &str, position: u64, wait: Duration) -> Result<(), FlowError> {
        let status = self.status(kind, name)?;
        if position <= status.caught_up() {
            return Ok(());
        }
        let head = self.runtime().store().log_head().await?;
        if position > head {
            return Err(FlowError::Unwritten { position, head });
        }
        // Here, the runner says; elsewhere in a cluster, its checkpoint.
        status.wake.notify_one();
        let mut caught_up = status.caught_up.subscribe();
        let stored = async {
            loop {
                tokio::time::sleep(Duration::from_millis(25)).await;
                if !status.running.load(Ordering::Relaxed)
                    && load_checkpoint(self, status).await.is_ok_and(|c| c >= position)
                {
                    return;
                }
            }
        };
        let reached = tokio::time::timeout(wait, async {
            tokio::select! {
                _ = caught_up.wait_for(|at| *at >= position) => {}
                () = stored => {}
            }
        });
        match reached.await {
            Ok(()) => Ok(()),
            Err(_) => Err(FlowError::Behind {
                kind: kind.label(),
                name: name.to_owned(),
                position,
                at: *status.caught_up.borrow(),
                waited: wait,
            }),
        }
    }

    /// Folds the read model again from the start of the log: its rows are
    /// dropped once the runner takes the request up. The request is stored,
    /// so the runner finds it wherever it runs (in a cluster, on the
    /// leader, within a second) and after a restart; queries with a
    /// position wait for the rows to grow back.
    ///
    /// # Errors
    ///
    /// [`FlowError::Unknown`], or the store's.
    pub async fn rebuild(&self, name: &str) -> Result<(), FlowError> {
        let status = self.status(Kind::ReadModel, name)?;
        let asked = crate::runtime::now_ms().to_be_bytes().to_vec();
        self.views().write(REBUILDS, vec![(name.to_owned(), Some(asked))]).await?;
        status.rebuild.store(true, Ordering::Relaxed);
        status.caught_up.send_replace(0);
        Ok(())
    }

    /// Metrics in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        type Line = (&'static str, &'static str, fn(&RunnerStatus) -> u64);
        let lines: [Line; 5] = [
            ("aether_flow_lag", "Log positions a policy or read model has yet to process.", RunnerStatus::lag),
            ("aether_flow_parked_total", "Inputs parked with their error.", RunnerStatus::parked),
            ("aether_flow_events_total", "Events handled.", |s| s.handled.load(Ordering::Relaxed)),
            ("aether_flow_commands_sent_total", "Commands policies sent.", |s| s.sent.load(Ordering::Relaxed)),
            ("aether_flow_commands_rejected_total", "Commands policies sent that were rejected.", |s| {
                s.rejected.load(Ordering::Relaxed)
            }),
        ];
        for (metric, help, value) in lines {
            let kind = if metric.ends_with("_total") { "counter" } else { "gauge" };
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
            for status in self.statuses() {
                let _ = writeln!(
                    out,
                    "{metric}{{kind=\"{}\",name=\"{}\"}} {}",
                    status.kind.label(),
                    status.name.replace('\\', "\\\\").replace('"', "\\\""),
                    value(status)
                );
            }
        }
    }

    fn views(&self) -> &dyn ViewStore {
        self.inner.views.as_ref()
    }

    fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    fn sink(&self) -> &dyn CommandSink {
        self.inner.sink.as_ref()
    }
}

/// The key of a runner's checkpoint in the `checkpoints` space.
fn checkpoint_key(status: &RunnerStatus) -> String {
    format!("{}/{}", status.kind.label(), status.name)
}

const CHECKPOINTS: &str = "checkpoints";
/// Read models asked to fold again from the start, until their runner has dropped their rows.
const REBUILDS: &str = "rebuilds";
/// How often a runner looks for a rebuild asked of another host.
const REBUILD_CHECK: Duration = Duration::from_secs(1);

async fn load_checkpoint(flows: &Flows, status: &RunnerStatus) -> Result<u64, StoreError> {
    let stored = flows.views().get(CHECKPOINTS, &checkpoint_key(status)).await?;
    Ok(stored.and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes))
}

async fn save_checkpoint(flows: &Flows, status: &RunnerStatus, position: u64) -> Result<(), StoreError> {
    let write = (checkpoint_key(status), Some(position.to_be_bytes().to_vec()));
    flows.views().write(CHECKPOINTS, vec![write]).await
}

/// Growing pauses between retries of an unavailable store.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self { next: Duration::from_millis(50), max }
    }

    async fn wait(&mut self, status: &RunnerStatus, cause: &(dyn fmt::Display + Sync)) {
        tracing::warn!(runner = %status.name, kind = status.kind.label(), %cause, retry_in = ?self.next, "store unavailable");
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }

    fn reset(&mut self) {
        self.next = Duration::from_millis(50);
    }
}

/// What a runner keeps between batches: its VM.
enum Runner {
    Policy(Option<policy::Slot>),
    ReadModel(Option<read_model::Slot>),
}

impl Runner {
    /// `seen_until`: positions up to this may have been handed to a runner
    /// of this policy before (before a crash, on another node, or in an
    /// attempt that failed); later ones never were.
    async fn handle(
        &mut self,
        flows: &Flows,
        status: &RunnerStatus,
        batch: Vec<LoggedCommand>,
        seen_until: u64,
    ) -> Result<(), StoreError> {
        match self {
            Runner::Policy(slot) => policy::handle(flows, status, slot, batch, seen_until).await,
            Runner::ReadModel(slot) => read_model::handle(flows, status, slot, batch).await,
        }
    }
}

/// The runners' loop: read the log after the checkpoint, handle each batch
/// until that succeeds, then write the checkpoint.
async fn feed(flows: &Flows, status: &RunnerStatus) {
    let mut runner = match status.kind {
        Kind::Policy => Runner::Policy(None),
        Kind::ReadModel => Runner::ReadModel(None),
    };
    let store = flows.runtime().store().clone();
    let config = flows.inner.config.clone();
    let mut backoff = Backoff::new(config.max_backoff);
    let mut checkpoint = loop {
        match load_checkpoint(flows, status).await {
            Ok(checkpoint) => break checkpoint,
            Err(e) => backoff.wait(status, &e).await,
        }
    };
    // The component whose read model definition was last compared.
    let mut compared: Option<Arc<str>> = None;
    // Whether the stored checkpoint has been vouched for: not before a
    // read model redefined since its rows were folded has dropped them.
    let mut started = false;
    let mut rebuilds_checked: Option<tokio::time::Instant> = None;
    let mut idle = config.poll;
    let mut seen_until: Option<u64> = None;
    loop {
        if status.kind == Kind::ReadModel && rebuilds_checked.is_none_or(|t| t.elapsed() >= REBUILD_CHECK) {
            match flows.views().get(REBUILDS, &status.name).await {
                Ok(asked) => {
                    rebuilds_checked = Some(tokio::time::Instant::now());
                    if asked.is_some() {
                        status.rebuild.store(true, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    backoff.wait(status, &e).await;
                    continue;
                }
            }
        }
        if status.kind == Kind::ReadModel {
            let deployment = flows.runtime().component();
            let hash = deployment.component().hash();
            if compared.as_ref() != Some(hash) {
                match read_model::definition_changed(flows, status, deployment.component().model()).await {
                    Ok(changed) => {
                        compared = Some(hash.clone());
                        if changed {
                            status.rebuild.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        backoff.wait(status, &e).await;
                        continue;
                    }
                }
            }
        }
        if status.kind == Kind::ReadModel && status.rebuild.swap(false, Ordering::Relaxed) {
            match read_model::drop_rows(flows, status).await {
                Ok(()) => {
                    rebuilds_checked = None;
                    checkpoint = 0;
                    status.checkpoint.store(0, Ordering::Relaxed);
                    status.caught_up.send_replace(0);
                    tracing::info!(read_model = %status.name, "rebuilding from the start of the log");
                }
                Err(e) => {
                    status.rebuild.store(true, Ordering::Relaxed);
                    backoff.wait(status, &e).await;
                    continue;
                }
            }
        }
        if !started {
            status.advance(checkpoint);
            started = true;
        }
        // The head first: if the read then finds nothing, everything up to
        // the head is processed.
        let head = match store.log_head().await {
            Ok(head) => head,
            Err(e) => {
                backoff.wait(status, &e).await;
                continue;
            }
        };
        status.head.fetch_max(head, Ordering::Relaxed);
        // What a runner before this one may have handled: up to the head
        // when this one started.
        let seen = *seen_until.get_or_insert(head);
        let batch = match store.read_log(checkpoint, config.batch).await {
            Ok(batch) => batch,
            Err(e) => {
                backoff.wait(status, &e).await;
                continue;
            }
        };
        let Some(last) = batch.last().map(|c| c.position) else {
            // Nothing after the checkpoint up to the head: the head is the
            // checkpoint now (on JetStream the head may be a message of the
            // command index, which the log passes over).
            if head > checkpoint {
                match save_checkpoint(flows, status, head).await {
                    Ok(()) => {
                        checkpoint = head;
                        status.advance(head);
                    }
                    Err(e) => backoff.wait(status, &e).await,
                }
            }
            tokio::select! {
                () = tokio::time::sleep(idle) => idle = (idle * 2).min(config.max_poll),
                () = status.wake.notified() => idle = config.poll,
            }
            continue;
        };
        idle = config.poll;
        let mut seen = seen;
        loop {
            let handled = runner.handle(flows, status, batch.clone(), seen).await;
            seen = seen.max(last);
            seen_until = Some(seen);
            match handled {
                Ok(()) => break,
                Err(e) => backoff.wait(status, &e).await,
            }
        }
        loop {
            match save_checkpoint(flows, status, last).await {
                Ok(()) => break,
                Err(e) => backoff.wait(status, &e).await,
            }
        }
        backoff.reset();
        checkpoint = last;
        status.advance(last);
    }
}

/// An input parked with its error, as `GET /policies/{name}/parked` shows it.
fn parked_entry(position: u64, what: &str, error: &(dyn fmt::Display + Sync)) -> (String, Option<Vec<u8>>) {
    let value = serde_json::json!({ "position": position.to_string(), "input": what, "error": error.to_string() });
    // Keys sort by position: zero-padded.
    (format!("{position:020}/{what}"), Some(value.to_string().into_bytes()))
}

/// The space of a runner's parked inputs.
fn parked_space(status: &RunnerStatus) -> String {
    format!("parked/{}", checkpoint_key(status))
}

impl Flows {
    /// A runner's parked inputs, oldest first, at most `limit` after `after`.
    ///
    /// # Errors
    ///
    /// [`FlowError::Unknown`], or the store's.
    pub async fn parked(
        &self,
        kind: Kind,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, serde_json::Value)>, FlowError> {
        let status = self.status(kind, name)?;
        let entries = self.views().scan(&parked_space(status), "", after, limit).await?;
        Ok(entries
            .into_iter()
            .map(|(k, v)| (k, serde_json::from_slice(&v).unwrap_or(serde_json::Value::Null)))
            .collect())
    }
}
