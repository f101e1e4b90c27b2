//! What the client subcommands share: the host's URL and how answers print.

use aether_host::api::{ClientError, HttpClient};
use serde_json::Value;

/// Where the running host is.
#[derive(Debug, clap::Args)]
pub struct Remote {
    /// The host's HTTP address, as `aether-host load` printed it.
    #[arg(long, env = "AETHER_URL", default_value = "http://127.0.0.1:7070", global = true)]
    pub url: String,
}

impl Remote {
    pub fn client(&self) -> anyhow::Result<HttpClient> {
        Ok(HttpClient::new(&self.url)?)
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
        ClientError::Api { kind, body, status, message } if kind == "rejected" => {
            anyhow::anyhow!("rejected ({}): {message} (HTTP {status})", body["code"].as_str().unwrap_or("?"))
        }
        ClientError::Api { kind, status, message, .. } => anyhow::anyhow!("{message} ({kind}, HTTP {status})"),
        _ => err.into(),
    }
}
