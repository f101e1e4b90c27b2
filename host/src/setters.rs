//! `with_*` setters for the public configs.
//!
//! Every config is `#[non_exhaustive]`, so that a field can be added without
//! breaking an embedder; code outside the crate builds one from its
//! `Default` (or `new`) and these setters, or sets fields on a value it has:
//!
//! ```
//! use std::time::Duration;
//! let config = aether_host::RuntimeConfig::default()
//!     .with_max_live_actors(1_000)
//!     .with_idle_timeout(Duration::from_secs(60));
//! assert_eq!(config.max_live_actors, 1_000);
//! ```
//!
//! They live here, apart from the configs, so each config's file keeps to
//! its concern; a field without a setter here is one somebody forgot.

use crate::actor::ActorConfig;
use crate::admission::AdmissionConfig;
use crate::api::client::HttpClientConfig;
use crate::api::nats::NatsApiConfig;
use crate::api::{ApiConfig, ClusterDoor, HttpToken, TlsConfig};
use crate::bus::BusConfig;
use crate::cluster::{ClusterConfig, ClusterNames, DriverConfig, NodeId, Rollout};
use crate::flow::{FlowConfig, Flows};
use crate::runtime::RuntimeConfig;
use crate::store::embedded::EmbeddedConfig;
use crate::store::jetstream::{JetStreamConfig, JetStreamStorage};
use crate::verify::VerifyConfig;
use crate::wasm::{EngineConfig, MemoryLayout};
use std::time::Duration;

/// A `with_<field>` setter, by value, for each field named.
macro_rules! with_setters {
    ($config:ty { $($setter:ident => $field:ident: $ty:ty),* $(,)? }) => {
        impl $config {
            $(
                #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
                #[must_use]
                pub fn $setter(mut self, $field: $ty) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}

with_setters!(BusConfig {
    with_local_capacity => local_capacity: usize,
    with_nats_queue => nats_queue: usize,
});

with_setters!(RuntimeConfig {
    with_actor => actor: ActorConfig,
    with_max_live_actors => max_live_actors: usize,
    with_idle_timeout => idle_timeout: Duration,
    with_admission => admission: AdmissionConfig,
});

with_setters!(VerifyConfig {
    with_aggregate => aggregate: Option<String>,
    with_actors => actors: Option<Vec<String>>,
    with_limit => limit: Option<usize>,
    with_max_reported => max_reported: usize,
    with_replay_batch => replay_batch: usize,
    with_max_rebuilds => max_rebuilds: usize,
});

with_setters!(ActorConfig {
    with_snapshot_every => snapshot_every: u64,
    with_replay_batch => replay_batch: usize,
    with_conflict_retries => conflict_retries: u32,
    with_remembered_commands => remembered_commands: usize,
    with_record_commands => record_commands: bool,
});

with_setters!(NatsApiConfig {
    with_max_body_bytes => max_body_bytes: usize,
    with_max_in_flight => max_in_flight: usize,
    with_cluster => cluster: Option<ClusterDoor>,
    with_trace_spans => trace_spans: bool,
});

with_setters!(HttpClientConfig {
    with_token => token: Option<String>,
    with_ca_cert => ca_cert: Option<Vec<u8>>,
});

with_setters!(ApiConfig {
    with_max_body_bytes => max_body_bytes: usize,
    with_max_events_per_page => max_events_per_page: usize,
    with_max_component_bytes => max_component_bytes: usize,
    with_max_in_flight_commands => max_in_flight_commands: usize,
    with_token => token: Option<HttpToken>,
    with_tls => tls: Option<TlsConfig>,
    with_cluster => cluster: Option<ClusterDoor>,
    with_rollout => rollout: Option<Rollout>,
    with_rollout_wait => rollout_wait: Duration,
    with_trace_spans => trace_spans: bool,
    with_flows => flows: Option<Flows>,
});

with_setters!(FlowConfig {
    with_batch => batch: usize,
    with_poll => poll: Duration,
    with_max_poll => max_poll: Duration,
    with_max_backoff => max_backoff: Duration,
});

with_setters!(EngineConfig {
    with_max_memory_bytes => max_memory_bytes: usize,
    with_max_instances => max_instances: u32,
    with_call_timeout => call_timeout: Duration,
    with_epoch_interval => epoch_interval: Duration,
    with_inline_budget => inline_budget: Duration,
    with_max_offloaded_calls => max_offloaded_calls: usize,
    with_layout => layout: MemoryLayout,
});

with_setters!(EmbeddedConfig {
    with_max_batch => max_batch: usize,
    with_queue_capacity => queue_capacity: usize,
    with_cache_size_bytes => cache_size_bytes: usize,
    with_checkpoint_writes => checkpoint_writes: usize,
    with_checkpoint_interval => checkpoint_interval: Duration,
});

with_setters!(JetStreamConfig {
    with_namespace => namespace: Option<String>,
    with_replicas => replicas: usize,
    with_storage => storage: JetStreamStorage,
    with_max_message_bytes => max_message_bytes: usize,
    with_duplicate_window => duplicate_window: Duration,
    with_request_timeout => request_timeout: Duration,
    with_read_batch => read_batch: usize,
    with_cached_actors => cached_actors: usize,
});

with_setters!(DriverConfig {
    with_protocol => protocol: ClusterConfig,
    with_node_id => node_id: NodeId,
    with_names => names: ClusterNames,
    with_kv_replicas => kv_replicas: usize,
    with_kv_timeout => kv_timeout: Duration,
    with_leave_grace => leave_grace: Duration,
});

with_setters!(ClusterConfig {
    with_shards => shards: u32,
    with_heartbeat_interval => heartbeat_interval: Duration,
    with_member_lease => member_lease: Duration,
    with_failure_timeout => failure_timeout: Duration,
    with_leader_renew => leader_renew: Duration,
    with_leader_lease => leader_lease: Duration,
    with_leader_timeout => leader_timeout: Duration,
    with_max_drift => max_drift: f64,
});

with_setters!(AdmissionConfig {
    with_max_activations => max_activations: usize,
    with_max_time_travels => max_time_travels: usize,
    with_wait => wait: Duration,
});
