//! `--nats` and the connection flags `load` passes through to async-nats.

use aether_host::store::jetstream::{JetStreamConfig, JetStreamStorage};
use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;

/// Connecting to NATS: where, as whom, over what TLS.
#[derive(Debug, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated. With it, events live in JetStream
    /// and commands are also served over NATS request/reply.
    #[arg(long, env = "AETHER_NATS")]
    pub nats: Option<String>,
    /// Namespace (tenant): its streams, buckets and subjects are its own.
    #[arg(long, env = "AETHER_NAMESPACE", requires = "nats")]
    pub namespace: Option<String>,
    /// User name (with --nats-password).
    #[arg(long, env = "AETHER_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,
    /// Password (with --nats-user).
    #[arg(long, env = "AETHER_NATS_PASSWORD", requires = "nats_user", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// Authentication token.
    #[arg(long, env = "AETHER_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// Credentials file (JWT and nkey seed), as `nsc` writes it.
    #[arg(long, env = "AETHER_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// Nkey seed (`SU…`).
    #[arg(long, env = "AETHER_NATS_NKEY", hide_env_values = true)]
    pub nats_nkey: Option<String>,
    /// CA certificate (PEM) to trust the server's TLS certificate with.
    #[arg(long)]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (with --nats-tls-key).
    #[arg(long, requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long, requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
    /// Refuse to connect without TLS.
    #[arg(long)]
    pub nats_require_tls: bool,
    /// Copies of each event the JetStream cluster keeps (1 loses events with
    /// a server's disk; use 3 on a cluster). Applies when the stream is created.
    #[arg(long, default_value_t = JetStreamConfig::default().replicas)]
    pub js_replicas: usize,
    /// JetStream storage: `file`, or `memory` (everything lost when the server restarts).
    #[arg(long, default_value = "file", value_parser = ["file", "memory"])]
    pub js_storage: String,
    /// Largest command (all its events) or snapshot JetStream accepts, in bytes.
    #[arg(long, default_value_t = JetStreamConfig::default().max_message_bytes)]
    pub js_max_message_bytes: usize,
    /// Seconds the server remembers command ids to drop retried appends.
    #[arg(long, default_value_t = JetStreamConfig::default().duplicate_window.as_secs())]
    pub js_duplicate_window_s: u64,
    /// The longest one request to JetStream may take, in milliseconds; past it
    /// the command fails with `503` rather than hang.
    #[arg(long, default_value_t = JetStreamConfig::default().request_timeout.as_millis() as u64)]
    pub js_timeout_ms: u64,
}

impl NatsArgs {
    /// The event store's settings from the flags.
    pub fn store_config(&self) -> JetStreamConfig {
        JetStreamConfig::default()
            .with_namespace(self.namespace.clone())
            .with_replicas(self.js_replicas)
            .with_storage(if self.js_storage == "memory" { JetStreamStorage::Memory } else { JetStreamStorage::File })
            .with_max_message_bytes(self.js_max_message_bytes)
            .with_duplicate_window(Duration::from_secs(self.js_duplicate_window_s.max(1)))
            .with_request_timeout(Duration::from_millis(self.js_timeout_ms.max(1)))
    }

    /// Connects, failing fast if no server answers; once connected, the
    /// client reconnects by itself after a connection loss.
    pub async fn connect(&self, url: &str) -> anyhow::Result<async_nats::Client> {
        let mut options = async_nats::ConnectOptions::new()
            .name("aether-host")
            .connection_timeout(Duration::from_secs(5))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("connected to NATS"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("disconnected from NATS; reconnecting (commands fail until then)")
                    }
                    other => tracing::warn!(event = %other, "NATS"),
                }
            });
        if let (Some(user), Some(password)) = (&self.nats_user, &self.nats_password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.nats_token {
            options = options.token(token.clone());
        }
        if let Some(creds) = &self.nats_creds {
            options = options
                .credentials_file(creds)
                .await
                .with_context(|| format!("cannot read the credentials file {}", creds.display()))?;
        }
        if let Some(seed) = &self.nats_nkey {
            options = options.nkey(seed.clone());
        }
        if let Some(ca) = &self.nats_tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.nats_tls_cert, &self.nats_tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.nats_require_tls {
            options = options.require_tls(true);
        }
        let servers: Vec<async_nats::ServerAddr> = url
            .split(',')
            .map(|s| s.trim().parse().with_context(|| format!("`{s}` is not a NATS server address")))
            .collect::<anyhow::Result<_>>()?;
        options.connect(servers).await.with_context(|| format!("cannot connect to NATS at {url}"))
    }
}
