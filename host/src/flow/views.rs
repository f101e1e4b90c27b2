//! Where policies and read models keep what they derive: checkpoints, rows,
//! parked inputs and recorded outcomes, in the host's store.
//!
//! A [`ViewStore`] holds ordered key spaces of bytes. One per event store
//! kind: in memory beside the [`MemoryStore`](crate::store::MemoryStore),
//! a redb file (`views.redb`) beside the embedded store's, and a key-value
//! bucket (`aether_views`, [`NatsNames::views_bucket`](crate::names::NatsNames::views_bucket)) on JetStream,
//! shared by every host of a cluster so a runner can move between them.
//!
//! Writes of one call need not be atomic together: runners make every
//! write idempotent (a row carries the log position it has folded up to, a
//! checkpoint is written after the writes it covers), so a crash between
//! two writes is repaired by reading the log again from the checkpoint.

use crate::store::StoreError;
use async_nats::jetstream::kv;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;

/// A put (`Some`) or a delete (`None`) of one key.
pub type ViewWrite = (String, Option<Vec<u8>>);

/// Ordered key spaces of bytes.
#[async_trait]
pub trait ViewStore: Send + Sync + fmt::Debug + 'static {
    async fn get(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Puts and deletes keys of one space, in order.
    async fn write(&self, space: &str, writes: Vec<ViewWrite>) -> Result<(), StoreError>;

    /// The keys of `space` starting with `prefix` and greater than `after`,
    /// in key order, at most `limit`, with their values.
    async fn scan(
        &self,
        space: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Deletes every key of `space`.
    async fn clear(&self, space: &str) -> Result<(), StoreError>;
}

/// Views in memory, gone with the process.
#[derive(Debug, Default)]
pub struct MemoryViews {
    spaces: Mutex<BTreeMap<String, BTreeMap<String, Vec<u8>>>>,
}

impl MemoryViews {
    fn spaces(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<String, Vec<u8>>>> {
        // Every mutation is one insert or remove: a poisoned lock is safe to keep using.
        self.spaces.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ViewStore for MemoryViews {
    async fn get(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.spaces().get(space).and_then(|s| s.get(key)).cloned())
    }

    async fn write(&self, space: &str, writes: Vec<ViewWrite>) -> Result<(), StoreError> {
        let mut spaces = self.spaces();
        let space = spaces.entry(space.to_owned()).or_default();
        for (key, value) in writes {
            match value {
                Some(value) => space.insert(key, value),
                None => space.remove(&key),
            };
        }
        Ok(())
    }

    async fn scan(
        &self,
        space: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let spaces = self.spaces();
        let Some(space) = spaces.get(space) else { return Ok(Vec::new()) };
        let from = std::ops::Bound::Included(prefix.to_owned());
        Ok(space
            .range((from, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn clear(&self, space: &str) -> Result<(), StoreError> {
        self.spaces().remove(space);
        Ok(())
    }
}

const VIEWS: redb::TableDefinition<(&str, &str), &[u8]> = redb::TableDefinition::new("views");

/// Views in a redb file beside the embedded event store's.
pub struct EmbeddedViews {
    db: std::sync::Arc<redb::Database>,
    file: String,
}

impl fmt::Debug for EmbeddedViews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedViews").field("file", &self.file).finish()
    }
}

/// The file inside the data directory.
pub const VIEWS_FILE: &str = "views.redb";

impl EmbeddedViews {
    /// Opens `views.redb` in `dir`, creating it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the file cannot be created or opened.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(VIEWS_FILE);
        let file = path.display().to_string();
        let failed = |e: &dyn fmt::Display| StoreError::Unavailable(format!("cannot open {file}: {e}"));
        let db = redb::Database::create(&path).map_err(|e| failed(&e))?;
        let txn = db.begin_write().map_err(|e| failed(&e))?;
        txn.open_table(VIEWS).map_err(|e| failed(&e))?;
        txn.commit().map_err(|e| failed(&e))?;
        Ok(Self { db: std::sync::Arc::new(db), file })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        what: String,
        work: impl FnOnce(&redb::Database) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("{what} in {file}: {e}")))?
            .map_err(|e| StoreError::Unavailable(format!("{what} in {}: {e}", self.file)))
    }
}

#[async_trait]
impl ViewStore for EmbeddedViews {
    async fn get(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (space, key) = (space.to_owned(), key.to_owned());
        self.blocking(format!("reading {space}/{key}"), move |db| {
            use redb::ReadableDatabase;
            let txn = db.begin_read()?;
            let table = txn.open_table(VIEWS)?;
            Ok(table.get((space.as_str(), key.as_str()))?.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn write(&self, space: &str, writes: Vec<ViewWrite>) -> Result<(), StoreError> {
        let space = space.to_owned();
        self.blocking(format!("writing {space}"), move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(VIEWS)?;
                for (key, value) in &writes {
                    match value {
                        Some(value) => drop(table.insert((space.as_str(), key.as_str()), value.as_slice())?),
                        None => drop(table.remove((space.as_str(), key.as_str()))?),
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn scan(
        &self,
        space: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let (space, prefix, after) = (space.to_owned(), prefix.to_owned(), after.map(str::to_owned));
        self.blocking(format!("listing {space}"), move |db| {
            use redb::ReadableDatabase;
            let txn = db.begin_read()?;
            let table = txn.open_table(VIEWS)?;
            let start = match &after {
                Some(after) if after.as_str() >= prefix.as_str() => after.as_str(),
                _ => prefix.as_str(),
            };
            let mut out = Vec::new();
            for row in table.range((space.as_str(), start)..)? {
                let (key, value) = row?;
                let (found_space, found) = key.value();
                if found_space != space || !found.starts_with(&prefix) || out.len() >= limit {
                    break;
                }
                if after.as_deref().is_none_or(|a| found > a) {
                    out.push((found.to_owned(), value.value().to_vec()));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn clear(&self, space: &str) -> Result<(), StoreError> {
        let space = space.to_owned();
        self.blocking(format!("clearing {space}"), move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(VIEWS)?;
                table.retain_in((space.as_str(), "")..(space.as_str(), "\u{10FFFF}"), |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

/// Views in a JetStream key-value bucket, shared by a cluster's hosts.
/// Keys are `<domain>.<space>.<key>`, each encoded as one subject token.
#[derive(Debug)]
pub struct JetStreamViews {
    bucket: kv::Store,
    /// The domain's token, which every key starts with.
    domain: String,
}

impl JetStreamViews {
    /// Opens the views bucket of `names`, creating it, for `domain`'s keys.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the bucket can be neither opened nor created.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        names: &crate::names::NatsNames,
        domain: &str,
        replicas: usize,
    ) -> Result<Self, StoreError> {
        let name = names.views_bucket();
        let domain = crate::store::jetstream::subject::encode_token(domain);
        if let Ok(bucket) = js.get_key_value(&name).await {
            return Ok(Self { bucket, domain });
        }
        let config = kv::Config {
            bucket: name.clone(),
            description: "Aether: what policies and read models derive (rows, checkpoints)".into(),
            history: 1,
            num_replicas: replicas,
            ..Default::default()
        };
        match js.create_key_value(config).await {
            Ok(bucket) => Ok(Self { bucket, domain }),
            Err(create) => js
                .get_key_value(&name)
                .await
                .map(|bucket| Self { bucket, domain })
                .map_err(|_| StoreError::Unavailable(format!("cannot create the bucket {name}: {create}"))),
        }
    }

    fn key(&self, space: &str, key: &str) -> String {
        use crate::store::jetstream::subject::encode_token;
        format!("{}.{}.{}", self.domain, encode_token(space), encode_token(key))
    }

    fn unavailable(what: &str, e: impl fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("{what}: {e}"))
    }
}

#[async_trait]
impl ViewStore for JetStreamViews {
    async fn get(&self, space: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.bucket.get(self.key(space, key)).await.map_err(|e| Self::unavailable("reading a view", e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn write(&self, space: &str, writes: Vec<ViewWrite>) -> Result<(), StoreError> {
        for (key, value) in writes {
            let key = self.key(space, &key);
            match value {
                Some(value) => {
                    self.bucket.put(key, value.into()).await.map_err(|e| Self::unavailable("writing a view", e))?;
                }
                None => self.bucket.purge(key).await.map_err(|e| Self::unavailable("deleting a view", e))?,
            }
        }
        Ok(())
    }

    /// Reads the space's newest entries from an ordered consumer over its
    /// subjects (`$KV.<bucket>.<space>.>`, the last message of each):
    /// the space, not the bucket, and values with the keys.
    async fn scan(
        &self,
        space: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        use futures_util::StreamExt;
        let failed = |e: &dyn fmt::Display| Self::unavailable("listing views", e);
        let space_token = crate::store::jetstream::subject::encode_token(space);
        let subjects = format!("{}{}.{space_token}.", self.bucket.prefix, self.domain);
        let config = OrderedConfig {
            filter_subject: format!("{subjects}>"),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        };
        let mut consumer = self.bucket.stream.create_consumer(config).await.map_err(|e| failed(&e))?;
        let mut pending = consumer.info().await.map_err(|e| failed(&e))?.num_pending;
        let mut found = Vec::new();
        if pending > 0 {
            let mut messages = consumer.messages().await.map_err(|e| failed(&e))?;
            while pending > 0 {
                let next = tokio::time::timeout(std::time::Duration::from_secs(10), messages.next()).await;
                let message = match next {
                    Ok(Some(Ok(message))) => message,
                    Ok(Some(Err(e))) => return Err(failed(&e)),
                    Ok(None) | Err(_) => return Err(failed(&"the listing stopped before its end")),
                };
                pending = message.info().map_err(|e| failed(&e))?.pending;
                let removed = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("KV-Operation"))
                    .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
                let key = message
                    .subject
                    .strip_prefix(subjects.as_str())
                    .and_then(crate::store::jetstream::subject::decode_token);
                if let Some(key) =
                    key.filter(|k| !removed && k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a))
                {
                    found.push((key, message.payload.to_vec()));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.truncate(limit);
        Ok(found)
    }

    async fn clear(&self, space: &str) -> Result<(), StoreError> {
        loop {
            let keys = self.scan(space, "", None, 1024).await?;
            if keys.is_empty() {
                return Ok(());
            }
            self.write(space, keys.into_iter().map(|(k, _)| (k, None)).collect()).await?;
        }
    }
}
