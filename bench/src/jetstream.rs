//! Commands on the JetStream store next to raw JetStream publishes of
//! messages of the same size at the same concurrency, on one local
//! `nats-server` (the test kit's: ephemeral port, file storage in a
//! temporary directory). The commands run twice: with ids the host mints
//! (the headline), then with ids their caller chose, on other accounts.

use crate::commands::{self, CommandIds, Commands, Shape};
use crate::load::LoadResult;
use crate::nats;
use aether_host::store::{JetStreamConfig, JetStreamEventStore};
use aether_host::testkit::nats::NatsServer;
use aether_host::{DomainComponent, EventStore};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Default)]
pub struct JetStream {
    /// Commands whose ids the host mints (the headline figure).
    pub commands: Commands,
    /// Commands whose ids their caller chose, which the store asks the
    /// server to de-duplicate.
    pub caller_ids: Commands,
    pub raw: LoadResult,
    /// Raw publishes carrying the two headers the store asks the server to
    /// check for a caller's id: a message id and the expected sequence.
    pub with_headers: LoadResult,
    /// Bytes the server stores per command message of the headline run
    /// (payload, headers, subject): the size of the raw messages.
    pub message_bytes: usize,
}

/// `None` when no `nats-server` is installed.
///
/// # Errors
///
/// If the server starts but the store or a publish fails.
pub fn run(
    tokio: &tokio::runtime::Runtime,
    component: &DomainComponent,
    shape: Shape,
) -> anyhow::Result<Option<JetStream>> {
    if !nats::server_available() {
        return Ok(None);
    }
    let server = NatsServer::start();
    tokio.block_on(async {
        let config = JetStreamConfig::default();
        let stream = config.stream_name();
        let store = JetStreamEventStore::connect(server.client().await, &component.model().name, config).await?;
        let store: Arc<dyn EventStore> = Arc::new(store);
        let commands = commands::through_runtime(component, store.clone(), shape).await?;
        // The size of the headline's messages, before the other run adds its own.
        let js = async_nats::jetstream::new(server.client().await);
        let info = js.get_stream(&stream).await?.info().await?.state.clone();
        let message_bytes = (info.bytes / info.messages.max(1)) as usize;
        let caller_ids = commands::through_runtime_with(component, store, shape, CommandIds::FromCaller).await?;
        let (actors, clients, window, rounds) = (shape.actors, shape.clients, shape.window, shape.rounds);
        let client = server.client().await;
        let raw = nats::raw_publish(client.clone(), actors, clients, message_bytes, window, rounds, false).await?;
        let with_headers = nats::raw_publish(client, actors, clients, message_bytes, window, rounds, true).await?;
        Ok(Some(JetStream { commands, caller_ids, raw, with_headers, message_bytes }))
    })
}
