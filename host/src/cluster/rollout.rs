//! Live upgrades across a cluster: every node runs the component a KV key
//! names, and moves to another when the key changes.
//!
//! The component bucket ([`NatsNames::components_bucket`]) holds, per domain:
//! - the bytes of each component ever rolled out, in chunks of
//!   [`CHUNK_BYTES`] under `<domain>.wasm.<sha-256>.<i>` (a KV value must fit
//!   one NATS message), kept so a rollback needs no upload;
//! - `<domain>.current`: the component every node runs ([`Current`]);
//! - `<domain>.node.<node>`: which component a node runs, or why it could
//!   not move ([`NodeComponent`]), for `GET /cluster`.
//!
//! A node watches `current` (and re-reads it every few seconds, since KV
//! watches have been seen not to resume after a server restart); on a new
//! hash it fetches the chunks, checks their SHA-256, compiles the component
//! and swaps it in with [`Runtime::upgrade`], then says so under its node
//! key. A node starting up follows `current` too, whatever file it was
//! started with; the first node of a cluster publishes its own component.
//! The upgrade route checks the component on its own node first, so a bad
//! component is refused before any node sees it.
//!
//! Nodes move one by one as they see the key, so for a moment two nodes may
//! run different components; each actor still runs on one node at a time,
//! so its events switch from one hash to the next once.

use crate::names::NatsNames;
use crate::runtime::Runtime;
use crate::upgrade::{UpgradeError, UpgradeOptions};
use crate::wasm::DomainComponent;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes of a component per KV value: below NATS' default 1 MiB message.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// How often a node re-reads the current component besides watching it.
const REREAD_EVERY: Duration = Duration::from_secs(5);

/// The component every node of a domain's cluster runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    /// SHA-256 of the component, hex.
    pub hash: String,
    pub size: u64,
    pub chunks: u32,
    /// Swapped in although it removes aggregates or events.
    pub force: bool,
}

/// Which component a node runs, and why it did not move to the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeComponent {
    /// The component it runs.
    pub hash: String,
    /// The component it could not move to, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a rollout step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    #[error("cannot use the components bucket {bucket}: {cause}")]
    Bucket { bucket: String, cause: String },
    #[error("cannot {what} in the components bucket: {cause}")]
    Kv { what: String, cause: String },
    #[error("the stored component {hash} is {problem}")]
    Corrupt { hash: String, problem: String },
    #[error(transparent)]
    Upgrade(#[from] UpgradeError),
}

/// A node's part in cluster-wide upgrades. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Rollout {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kv: kv::Store,
    names: NatsNames,
    domain: String,
    node: String,
    runtime: Runtime,
    /// The last hash this node failed to move to, not retried until `current` changes.
    failed: Mutex<Option<String>>,
    /// What this node last wrote under its node key.
    reported: Mutex<Option<NodeComponent>>,
    /// One move at a time.
    moving: tokio::sync::Mutex<()>,
}

impl Rollout {
    /// Opens the components bucket, publishes `running` (the bytes of the
    /// runtime's component) as the current component if the cluster has
    /// none yet, else moves to the cluster's current component; then
    /// follows it until the process ends.
    ///
    /// # Errors
    ///
    /// The bucket cannot be opened, or the current component cannot be
    /// read, fetched or swapped in.
    pub async fn start(
        client: async_nats::Client,
        names: NatsNames,
        node: &str,
        runtime: Runtime,
        running: &[u8],
        replicas: usize,
    ) -> Result<Self, RolloutError> {
        let js = async_nats::jetstream::new(client);
        let bucket = names.components_bucket();
        let kv = open_bucket(&js, &bucket, replicas).await.map_err(|cause| RolloutError::Bucket { bucket, cause })?;
        let rollout = Self {
            inner: Arc::new(Inner {
                kv,
                domain: runtime.domain().to_string(),
                names,
                node: node.to_string(),
                runtime,
                failed: Mutex::new(None),
                reported: Mutex::new(None),
                moving: tokio::sync::Mutex::new(()),
            }),
        };
        match rollout.current().await? {
            None => {
                let current = rollout.store(running, false).await?;
                let key = rollout.inner.names.component_current(&rollout.inner.domain);
                // Another node may have published first: then follow it.
                if rollout.inner.kv.create(&key, encode(&current)).await.is_ok() {
                    tracing::info!(hash = %current.hash, "published this node's component as the cluster's");
                }
            }
            Some(current) if current.hash != **rollout.inner.runtime.component().hash() => {
                tracing::info!(hash = %current.hash, "the cluster runs another component; following it");
            }
            Some(_) => {}
        }
        if let Some(current) = rollout.current().await? {
            // The cluster runs it already: what this node was started with
            // does not get a say (the check guards new code, not the cluster's).
            rollout.follow(&Current { force: true, ..current }).await?;
        }
        tokio::spawn(rollout.clone().watch());
        Ok(rollout)
    }

    /// Stores `wasm` and makes it the cluster's current component; every
    /// node (this one too) moves to it as it sees the change. Check it first
    /// ([`crate::upgrade::check`]): nodes refuse what their runtime refuses.
    ///
    /// # Errors
    ///
    /// A KV write failing.
    pub async fn publish(&self, wasm: &[u8], force: bool) -> Result<Current, RolloutError> {
        let current = self.store(wasm, force).await?;
        let key = self.inner.names.component_current(&self.inner.domain);
        self.inner.kv.put(&key, encode(&current)).await.map_err(|e| kv_error("set the current component", e))?;
        Ok(current)
    }

    /// Which component each of `nodes` says it runs (`None`: it has not said).
    pub async fn nodes(&self, nodes: &[String]) -> BTreeMap<String, Option<NodeComponent>> {
        let mut found = BTreeMap::new();
        for node in nodes {
            let key = self.inner.names.component_node(&self.inner.domain, node);
            let value = self.inner.kv.get(&key).await.ok().flatten();
            found.insert(node.clone(), value.and_then(|v| serde_json::from_slice(&v).ok()));
        }
        found
    }

    /// The cluster's current component, if one was published.
    ///
    /// # Errors
    ///
    /// The key cannot be read.
    pub async fn current(&self) -> Result<Option<Current>, RolloutError> {
        let key = self.inner.names.component_current(&self.inner.domain);
        let value = self.inner.kv.get(&key).await.map_err(|e| kv_error("read the current component", e))?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Stores a component's chunks (again, if they are there: a put of the
    /// same bytes is harmless).
    async fn store(&self, wasm: &[u8], force: bool) -> Result<Current, RolloutError> {
        let hash = hex::encode(Sha256::digest(wasm));
        let mut chunks = 0;
        for (i, chunk) in wasm.chunks(CHUNK_BYTES).enumerate() {
            let key = self.inner.names.component_chunk(&self.inner.domain, &hash, i as u32);
            self.inner
                .kv
                .put(&key, Bytes::copy_from_slice(chunk))
                .await
                .map_err(|e| kv_error("store the component", e))?;
            chunks += 1;
        }
        Ok(Current { hash, size: wasm.len() as u64, chunks, force })
    }

    /// Reads a component's chunks and checks them against its hash.
    async fn fetch(&self, current: &Current) -> Result<Vec<u8>, RolloutError> {
        let corrupt = |problem: String| RolloutError::Corrupt { hash: current.hash.clone(), problem };
        // A size read from the bucket sizes nothing before the bytes are there.
        let mut wasm = Vec::new();
        for i in 0..current.chunks {
            let key = self.inner.names.component_chunk(&self.inner.domain, &current.hash, i);
            let chunk = self.inner.kv.get(&key).await.map_err(|e| kv_error("read the component", e))?;
            let chunk = chunk.ok_or_else(|| corrupt(format!("missing chunk {i} of {}", current.chunks)))?;
            wasm.extend_from_slice(&chunk);
            if wasm.len() as u64 > current.size {
                return Err(corrupt(format!("longer than its {} bytes", current.size)));
            }
        }
        if hex::encode(Sha256::digest(&wasm)) != current.hash {
            return Err(corrupt("not the bytes its hash names".into()));
        }
        Ok(wasm)
    }

    /// Moves this node to `current` if it runs another component, and says
    /// what it runs. A component that failed once is not tried again until
    /// `current` names another.
    async fn follow(&self, current: &Current) -> Result<(), RolloutError> {
        let _moving = self.inner.moving.lock().await;
        let runtime = &self.inner.runtime;
        if current.hash != **runtime.component().hash() {
            if self.inner.failed.lock().unwrap_or_else(|e| e.into_inner()).as_deref() == Some(&current.hash) {
                return Ok(());
            }
            if let Err(err) = self.swap(current).await {
                tracing::error!(hash = %current.hash, cause = %err, "cannot move to the cluster's component");
                // A KV failure is tried again at the next re-read; the
                // component itself would fail the same way.
                if matches!(err, RolloutError::Kv { .. }) {
                    return Err(err);
                }
                *self.inner.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(current.hash.clone());
                let hash = runtime.component().hash().to_string();
                let failed = NodeComponent { hash, wanted: Some(current.hash.clone()), error: Some(err.to_string()) };
                self.report(failed).await;
                return Err(err);
            }
        }
        self.report(NodeComponent { hash: runtime.component().hash().to_string(), wanted: None, error: None }).await;
        Ok(())
    }

    async fn swap(&self, current: &Current) -> Result<(), RolloutError> {
        let wasm = self.fetch(current).await?;
        let engine = self.inner.runtime.component().engine().clone();
        let component = tokio::task::spawn_blocking(move || DomainComponent::from_bytes(&engine, &wasm))
            .await
            .map_err(|e| RolloutError::Corrupt { hash: current.hash.clone(), problem: format!("not compiled: {e}") })?
            .map_err(UpgradeError::Load)?;
        let report = self.inner.runtime.upgrade(component, &UpgradeOptions { force: current.force })?;
        tracing::info!(previous = %report.previous, current = %report.current, "moved to the cluster's component");
        Ok(())
    }

    /// Writes this node's key if it says something new.
    async fn report(&self, status: NodeComponent) {
        if self.inner.reported.lock().unwrap_or_else(|e| e.into_inner()).as_ref() == Some(&status) {
            return;
        }
        let key = self.inner.names.component_node(&self.inner.domain, &self.inner.node);
        let value = Bytes::from(serde_json::to_vec(&status).expect("a status serialises"));
        match self.inner.kv.put(&key, value).await {
            Ok(_) => *self.inner.reported.lock().unwrap_or_else(|e| e.into_inner()) = Some(status),
            Err(e) => tracing::warn!(cause = %e, "cannot say which component this node runs"),
        }
    }

    /// Follows the current key: its watch, and a re-read every few seconds.
    async fn watch(self) {
        let key = self.inner.names.component_current(&self.inner.domain);
        loop {
            let mut watch = match self.inner.kv.watch(&key).await {
                Ok(watch) => Some(watch),
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot watch the current component; re-reading it");
                    None
                }
            };
            let mut reread = tokio::time::interval(REREAD_EVERY);
            loop {
                let seen = tokio::select! {
                    entry = async { watch.as_mut()?.next().await }, if watch.is_some() => match entry {
                        Some(Ok(entry)) if entry.operation == kv::Operation::Put => {
                            serde_json::from_slice::<Current>(&entry.value).ok()
                        }
                        Some(Ok(_)) => None,
                        // The watch ended or failed: make it again.
                        _ => break,
                    },
                    _ = reread.tick() => self.current().await.ok().flatten(),
                };
                if let Some(current) = seen {
                    let _ = self.follow(&current).await;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn encode(current: &Current) -> Bytes {
    Bytes::from(serde_json::to_vec(current).expect("a current component serialises"))
}

fn kv_error(what: &str, cause: impl std::fmt::Display) -> RolloutError {
    RolloutError::Kv { what: what.to_owned(), cause: cause.to_string() }
}

/// Opens the bucket, creating it if absent; one entry per key.
async fn open_bucket(js: &async_nats::jetstream::Context, bucket: &str, replicas: usize) -> Result<kv::Store, String> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: bucket.to_owned(),
        description: "Aether components: the bytes of each component rolled out, the current one, each node's".into(),
        history: 1,
        max_value_size: i32::try_from(CHUNK_BYTES + 1024).expect("fits"),
        num_replicas: replicas.max(1),
        storage: async_nats::jetstream::stream::StorageType::File,
        ..kv::Config::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another node created it meanwhile.
        Err(create) => js.get_key_value(bucket).await.map_err(|_| create.to_string()),
    }
}
