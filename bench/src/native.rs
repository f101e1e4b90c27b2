//! The native baseline of the command benchmarks: the bank aggregate called
//! directly, with the host's command path around it kept as it is: a
//! registry of actors each behind an async mutex, the command decoded from
//! its name and MessagePack payload, events encoded the same way, appended
//! to the same store with an expected version and provenance, applied only
//! after the append, a snapshot every 100 events. What is missing is the VM:
//! no wasm calls, no copies across the boundary.

use aether_guest::{Aggregate, Context, codec};
use aether_host::EventStore;
use aether_host::store::{ActorId, AppendRequest, NewEvent, Provenance, Snapshot};
use bank::{Account, AccountCommand, AccountEvent};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const SHARDS: usize = 64;
const SNAPSHOT_EVERY: u64 = 100;

#[derive(Debug, Default)]
struct NativeActor {
    state: Account,
    version: u64,
    since_snapshot: u64,
}

type Cell = Arc<tokio::sync::Mutex<NativeActor>>;

#[derive(Debug)]
pub struct NativeHost {
    store: Arc<dyn EventStore>,
    actors: Vec<Mutex<HashMap<String, Cell>>>,
    hasher: RandomState,
    hash: Arc<str>,
}

impl NativeHost {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            actors: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            hash: "0".repeat(64).into(),
        }
    }

    fn cell(&self, id: &str) -> Cell {
        let shard = &self.actors[self.hasher.hash_one(id) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    /// Opens an account: appends and applies `Opened` without deciding it
    /// (natively, the bank logs every opening to stderr).
    ///
    /// # Errors
    ///
    /// A store failure.
    pub async fn open(&self, id: &str) -> anyhow::Result<()> {
        let cell = self.cell(id);
        let mut actor = cell.lock().await;
        let event = AccountEvent::Opened { owner: "ada lovelace".into() };
        let (name, payload) = codec::split(&event).map_err(anyhow::Error::msg)?;
        let command_id: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        let provenance = Provenance {
            command_id: command_id.clone(),
            correlation_id: command_id.clone(),
            causation_id: command_id,
            timestamp_ms: 0,
            component_hash: self.hash.clone(),
            command: None,
        };
        let request = AppendRequest {
            expected_version: actor.version,
            provenance: Arc::new(provenance),
            events: vec![NewEvent { name, payload }],
            id_from_caller: false,
            shard_epoch: None,
        };
        let appended = self.store.append(&ActorId::new("Account", id), request).await?;
        actor.state.apply(&event);
        actor.version = appended.last_version;
        Ok(())
    }

    /// Decides, appends and applies one command.
    ///
    /// # Errors
    ///
    /// A rejection, an undecodable command or a store failure.
    pub async fn execute(&self, id: &str, name: &str, payload: &[u8]) -> anyhow::Result<()> {
        let cell = self.cell(id);
        let mut actor = cell.lock().await;
        let command: AccountCommand = codec::join(name, payload).map_err(anyhow::Error::msg)?;
        let command_id = uuid::Uuid::new_v4().to_string();
        let timestamp_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let ctx = Context {
            actor_id: id.to_string(),
            command_id: command_id.clone(),
            correlation_id: command_id.clone(),
            causation_id: command_id.clone(),
            timestamp_ms,
            version: actor.version,
        };
        let command_id: Arc<str> = command_id.into();
        let events: Vec<AccountEvent> =
            actor.state.handle(&ctx, command).map_err(|r| anyhow::anyhow!("rejected: {r}"))?;
        let mut new = Vec::with_capacity(events.len());
        for e in &events {
            let (name, payload) = codec::split(e).map_err(anyhow::Error::msg)?;
            new.push(NewEvent { name, payload });
        }
        let actor_id = ActorId::new("Account", id);
        let provenance = Provenance {
            command_id: command_id.clone(),
            correlation_id: command_id.clone(),
            causation_id: command_id,
            timestamp_ms,
            component_hash: self.hash.clone(),
            command: None,
        };
        let request = AppendRequest {
            expected_version: actor.version,
            provenance: Arc::new(provenance),
            events: new,
            id_from_caller: false,
            shard_epoch: None,
        };
        let appended = self.store.append(&actor_id, request).await?;
        for e in &events {
            actor.state.apply(e);
        }
        actor.version = appended.last_version;
        actor.since_snapshot += events.len() as u64;
        if actor.since_snapshot >= SNAPSHOT_EVERY {
            let snapshot = Snapshot {
                version: actor.version,
                component_hash: self.hash.to_string(),
                state: actor.state.snapshot(),
            };
            self.store.save_snapshot(&actor_id, snapshot).await?;
            actor.since_snapshot = 0;
        }
        Ok(())
    }
}
