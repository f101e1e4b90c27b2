//! Commands through the whole host: `Runtime::execute` with the guest
//! deciding and applying, on a given store, many distinct actors, both cores.
//! Baseline: the same commands on the same kind of store with the aggregate
//! called natively (see [`crate::native`]).

use crate::fixtures;
use crate::load::{self, LoadResult};
use crate::native::NativeHost;
use aether_host::{CommandOutcome, CommandRequest, DomainComponent, EventStore, Runtime, RuntimeConfig};
use bank::AccountCommand;
use std::sync::Arc;
use std::time::Duration;

/// How one command benchmark is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub actors: usize,
    pub clients: usize,
    pub window: Duration,
    pub rounds: usize,
}

/// The median round of a command benchmark, and how long opening the actors took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Commands {
    pub steady: LoadResult,
    pub open: LoadResult,
}

/// Who chooses the commands' ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandIds {
    /// The host mints one per command (a caller sends none).
    Minted,
    /// The caller sends one with each command, as a client that retries
    /// would: the host and the store then guard against its repeat.
    FromCaller,
}

fn ids(actors: usize, prefix: &str) -> Arc<Vec<String>> {
    Arc::new((0..actors).map(|i| format!("{prefix}-{i:06}")).collect())
}

fn outcome(result: Result<CommandOutcome, aether_host::ActorError>) -> anyhow::Result<()> {
    match result? {
        CommandOutcome::Accepted { .. } => Ok(()),
        CommandOutcome::Rejected { code, message } => anyhow::bail!("rejected: {code}: {message}"),
    }
}

/// Opens `shape.actors` accounts through the runtime, then deposits into
/// them for `shape.rounds` windows, the host minting the command ids.
///
/// # Errors
///
/// The first command that fails.
pub async fn through_runtime(
    component: &DomainComponent,
    store: Arc<dyn EventStore>,
    shape: Shape,
) -> anyhow::Result<Commands> {
    let accounts = Accounts::open(component, store, shape, CommandIds::Minted).await?;
    let steady = rounds(shape, || accounts.deposits(shape)).await?;
    Ok(Commands { steady, open: accounts.opened })
}

/// Accounts opened through a runtime, ready to take deposits.
#[derive(Debug)]
pub struct Accounts {
    runtime: Runtime,
    ids: Arc<Vec<String>>,
    command_ids: CommandIds,
    /// How opening them went.
    pub opened: LoadResult,
}

impl Accounts {
    /// Opens `shape.actors` accounts, `shape.clients` at a time, with ids of
    /// their own per `command_ids` (a store may hold accounts of both kinds).
    ///
    /// # Errors
    ///
    /// The first command that fails.
    pub async fn open(
        component: &DomainComponent,
        store: Arc<dyn EventStore>,
        shape: Shape,
        command_ids: CommandIds,
    ) -> anyhow::Result<Self> {
        let config = RuntimeConfig::default()
            .with_max_live_actors(shape.actors + 1024)
            .with_idle_timeout(Duration::from_secs(3600));
        let runtime = Runtime::new(component.clone(), store, config);
        let ids = ids(shape.actors, if command_ids == CommandIds::Minted { "acc" } else { "cid" });
        let open = fixtures::command(&AccountCommand::Open { owner: "ada lovelace".into() });
        let send = {
            let (runtime, ids) = (runtime.clone(), ids.clone());
            Arc::new(move |actor: usize, _| {
                let (runtime, req) = (runtime.clone(), request(&ids[actor], &open, command_ids));
                async move { outcome(runtime.execute(req).await) }
            })
        };
        let opened = load::each_once(shape.actors, shape.clients, send).await?;
        Ok(Self { runtime, ids, command_ids, opened })
    }

    /// Deposits into the accounts for one window.
    ///
    /// # Errors
    ///
    /// The first command that fails.
    pub async fn deposits(&self, shape: Shape) -> anyhow::Result<LoadResult> {
        let (runtime, ids, command_ids) = (self.runtime.clone(), self.ids.clone(), self.command_ids);
        let deposit = fixtures::command(&AccountCommand::Deposit { amount: 1 });
        let send = Arc::new(move |actor: usize, _| {
            let (runtime, req) = (runtime.clone(), request(&ids[actor], &deposit, command_ids));
            async move { outcome(runtime.execute(req).await) }
        });
        load::window(shape.actors, shape.clients, shape.window, send).await
    }
}

fn request(id: &str, (name, payload): &(String, Vec<u8>), command_ids: CommandIds) -> CommandRequest {
    CommandRequest {
        aggregate: "Account".into(),
        id: id.to_string(),
        command: name.clone(),
        payload: payload.clone(),
        command_id: (command_ids == CommandIds::FromCaller).then(|| uuid::Uuid::new_v4().to_string()),
        ..Default::default()
    }
}

/// The same as [`through_runtime`] with the aggregate called natively.
///
/// # Errors
///
/// The first command that fails.
pub async fn native(store: Arc<dyn EventStore>, shape: Shape) -> anyhow::Result<Commands> {
    let host = Arc::new(NativeHost::new(store));
    let ids = ids(shape.actors, "acc");
    let send = {
        let (host, ids) = (host.clone(), ids.clone());
        Arc::new(move |actor: usize, _| {
            let (host, ids) = (host.clone(), ids.clone());
            async move { host.open(&ids[actor]).await }
        })
    };
    let opened = load::each_once(shape.actors, shape.clients, send).await?;
    let deposit = fixtures::command(&AccountCommand::Deposit { amount: 1 });
    let send = Arc::new(move |actor: usize, _| {
        let (host, ids, deposit) = (host.clone(), ids.clone(), deposit.clone());
        async move { host.execute(&ids[actor], &deposit.0, &deposit.1).await }
    });
    let steady = rounds(shape, || load::window(shape.actors, shape.clients, shape.window, send.clone())).await?;
    Ok(Commands { steady, open: opened })
}

/// Runs the windows and keeps the median of each figure.
async fn rounds<Fut>(shape: Shape, mut window: impl FnMut() -> Fut) -> anyhow::Result<LoadResult>
where
    Fut: std::future::Future<Output = anyhow::Result<LoadResult>>,
{
    let mut results = Vec::new();
    for _ in 0..shape.rounds.max(1) {
        results.push(window().await?);
    }
    Ok(LoadResult::median_of(&results))
}
