//! What the client subcommands share: the host's URL and how answers print.

use aether_host::api::client::HttpClientConfig;
use aether_host::api::{ClientError, ErrorKind, HttpClient};
use anyhow::Context;
use serde_json::Value;
use std::path::PathBuf;

/// Where the running host is.
#[derive(Debug, clap::Args)]
pub struct Remote {
    /// The host's HTTP address, as `aether-host load` printed it.
    #[arg(long, env = "AETHER_URL", default_value = "http://127.0.0.1:7070", global = true)]
    pub url: String,
    /// The host's bearer token (`aether-host load --http-token`).
    #[arg(long, env = "AETHER_HTTP_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A PEM CA certificate to trust for an https:// URL (a self-signed host).
    #[arg(long, env = "AETHER_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

impl Remote {
    pub fn client(&self) -> anyhow::Result<HttpClient> {
        let ca_cert = match &self.ca_cert {
            Some(path) => Some(
                std::fs::read(path).with_context(|| format!("cannot read the CA certificate {}", path.display()))?,
            ),
            None => None,
        };
        let config = HttpClientConfig::default().with_token(self.token.clone()).with_ca_cert(ca_cert);
        Ok(HttpClient::with_config(&self.url, config)?)
    }
}

/// Runs a client request on a small runtime of its own.
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future))
}

/// Prints an answer as pretty JSON on stdout.
pub fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// An error answer as a one-line message; a rejection names its code.
pub fn explain(err: ClientError) -> anyhow::Error {
    match &err {
        ClientError::Api { kind: Some(ErrorKind::Rejected), body, status, message } => {
            anyhow::anyhow!("rejected ({}): {message} (HTTP {status})", body["code"].as_str().unwrap_or("?"))
        }
        ClientError::Api { body, status, message, .. } => {
            anyhow::anyhow!("{message} ({}, HTTP {status})", body["error"].as_str().unwrap_or("no kind"))
        }
        _ => err.into(),
    }
}
