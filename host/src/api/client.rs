//! [`HttpClient`]: a typed client of a running host's HTTP API, used by the
//! `send`, `state`, `events` and `model` subcommands.

use super::error::ErrorKind;
use reqwest::Url;
use serde_json::Value;

/// Talks to a host at a base URL such as `http://127.0.0.1:7070`.
#[derive(Debug, Clone)]
pub struct HttpClient {
    base: Url,
    http: reqwest::Client,
}

/// Why a request did not get a successful answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("`{0}` is not an http:// or https:// URL")]
    BadUrl(String),
    /// The token or CA certificate cannot be used.
    #[error("{0}")]
    Config(String),
    /// No answer: the host is not running there, or the connection broke.
    #[error("cannot reach the host at {url}: {cause} (is `aether-host load` running there?)")]
    Unreachable { url: String, cause: String },
    /// The host answered with an error. `kind` is `None` for a kind this
    /// build does not know (a newer host); the body names it.
    #[error("{message}")]
    Api { status: u16, kind: Option<ErrorKind>, message: String, body: Value },
    #[error("{url} answered {status} with a body that is not JSON: {cause}")]
    Protocol { url: String, status: u16, cause: String },
}

impl ClientError {
    /// An error answer: its body names the kind and the reason.
    pub(crate) fn from_answer(status: u16, body: Value) -> Self {
        let kind = body["error"].as_str().and_then(ErrorKind::parse);
        let message = body["message"].as_str().unwrap_or("the host gave no reason").to_owned();
        Self::Api { status, kind, message, body }
    }

    /// The error kind the host named, if it answered with one this build knows.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Api { kind, .. } => *kind,
            _ => None,
        }
    }
}

/// Optional ids sent with a command.
#[derive(Debug, Clone, Default)]
pub struct CommandIds<'a> {
    /// The command id: a retry with the same key appends nothing new.
    pub idempotency_key: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub causation_id: Option<&'a str>,
}

/// How to reach a host that asks for more than a URL.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct HttpClientConfig {
    /// Sent as `Authorization: Bearer <token>` with every request.
    pub token: Option<String>,
    /// A PEM CA certificate (or several) to trust besides the system's, for
    /// a host with a self-signed certificate.
    pub ca_cert: Option<Vec<u8>>,
}

impl std::fmt::Debug for HttpClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClientConfig")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("ca_cert", &self.ca_cert.as_ref().map(Vec::len))
            .finish()
    }
}

impl HttpClient {
    /// A client of the host at `url`.
    ///
    /// # Errors
    ///
    /// [`ClientError::BadUrl`] if `url` is not an `http://` or `https://` URL.
    pub fn new(url: &str) -> Result<Self, ClientError> {
        Self::with_config(url, HttpClientConfig::default())
    }

    /// A client of the host at `url` with a token and/or a CA to trust.
    ///
    /// # Errors
    ///
    /// [`ClientError::BadUrl`] as for [`new`](Self::new); [`ClientError::Config`]
    /// if the token cannot travel in a header or the CA certificate is not PEM.
    pub fn with_config(url: &str, config: HttpClientConfig) -> Result<Self, ClientError> {
        let base = Url::parse(url).map_err(|_| ClientError::BadUrl(url.to_owned()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientError::BadUrl(url.to_owned()));
        }
        let mut builder = reqwest::Client::builder();
        if let Some(token) = &config.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| ClientError::Config("the token must be visible ASCII".into()))?;
            value.set_sensitive(true);
            builder = builder.default_headers([(reqwest::header::AUTHORIZATION, value)].into_iter().collect());
        }
        if let Some(pem) = &config.ca_cert {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Config(format!("the CA certificate is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Config("the CA certificate file holds no certificate".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| ClientError::Config(cause(&e)))?;
        Ok(Self { base, http })
    }

    /// Sends a command with a JSON payload (`None` for a command without fields).
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] with kind `rejected` for a business rejection,
    /// and the other kinds of [`crate::api::error`].
    pub async fn send(
        &self,
        aggregate: &str,
        id: &str,
        command: &str,
        payload: Option<&Value>,
        ids: CommandIds<'_>,
    ) -> Result<Value, ClientError> {
        let url = self.url(&["actors", aggregate, id, "commands", command], &[]);
        let mut request = self.http.post(url.clone());
        if let Some(payload) = payload {
            request = request.json(payload);
        }
        for (header, value) in [
            ("idempotency-key", ids.idempotency_key),
            ("correlation-id", ids.correlation_id),
            ("causation-id", ids.causation_id),
        ] {
            if let Some(value) = value {
                request = request.header(header, value);
            }
        }
        self.answer(url, request).await
    }

    /// An actor's state and version, or its state at an earlier version.
    ///
    /// # Errors
    ///
    /// As the host answers, e.g. `unknown-aggregate`.
    pub async fn state(&self, aggregate: &str, id: &str, at_version: Option<u64>) -> Result<Value, ClientError> {
        let query: Vec<(&str, String)> = at_version.map(|v| ("at_version", v.to_string())).into_iter().collect();
        let url = self.url(&["actors", aggregate, id], &query);
        self.answer(url.clone(), self.http.get(url)).await
    }

    /// An actor's events from version `from` (1 if `None`), at most `limit`.
    ///
    /// # Errors
    ///
    /// As the host answers.
    pub async fn events(
        &self,
        aggregate: &str,
        id: &str,
        from: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Value, ClientError> {
        let mut query = Vec::new();
        if let Some(from) = from {
            query.push(("from", from.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        let url = self.url(&["actors", aggregate, id, "events"], &query);
        self.answer(url.clone(), self.http.get(url)).await
    }

    /// The hosted model.
    ///
    /// # Errors
    ///
    /// [`ClientError::Unreachable`] if no host answers.
    pub async fn model(&self) -> Result<Value, ClientError> {
        let url = self.url(&["model"], &[]);
        self.answer(url.clone(), self.http.get(url)).await
    }

    /// The cluster as the host sees it (`GET /cluster`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `not-found` from a host outside a cluster;
    /// [`ClientError::Unreachable`] if no host answers.
    pub async fn cluster(&self) -> Result<Value, ClientError> {
        let url = self.url(&["cluster"], &[]);
        self.answer(url.clone(), self.http.get(url)).await
    }

    /// The component the host runs (`GET /admin/component`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Unreachable`] if no host answers.
    pub async fn component(&self) -> Result<Value, ClientError> {
        let url = self.url(&["admin", "component"], &[]);
        self.answer(url.clone(), self.http.get(url)).await
    }

    /// A live upgrade (or rollback) of the host to the component `wasm`
    /// (`POST /admin/component`); `force` lets it remove aggregates or events.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `bad-component` (it does not load),
    /// `incompatible-component` (it removes aggregates or events),
    /// `other-domain`, `too-large`; the host then runs what it ran.
    pub async fn upgrade(&self, wasm: Vec<u8>, force: bool) -> Result<Value, ClientError> {
        // A host that refuses the request (a wrong token) answers before it
        // reads the body and closes the connection, so the client would see
        // a broken pipe rather than the answer: ask a bodiless route first.
        self.component().await?;
        let query: Vec<(&str, String)> = if force { vec![("force", "true".into())] } else { vec![] };
        let url = self.url(&["admin", "component"], &query);
        let request = self.http.post(url.clone()).header("content-type", "application/wasm").body(wasm);
        self.answer(url, request).await
    }

    /// A read model's row (`key`), or a page of its rows (no `key`), as
    /// `GET /read-models/{name}[/{key}]` answers; `query` holds the other
    /// parameters (`position`, `wait_ms`, `prefix`, `after`, `limit`,
    /// `where`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `not-found` (no such read model or row),
    /// `behind` (not caught up to `position` in time).
    pub async fn query(
        &self,
        read_model: &str,
        key: Option<&str>,
        query: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        let mut segments = vec!["read-models", read_model];
        segments.extend(key);
        let url = self.url(&segments, query);
        self.answer(url.clone(), self.http.get(url)).await
    }

    /// Has a read model folded again from the start of the log.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] `not-found` for a read model the host does not run.
    pub async fn rebuild(&self, read_model: &str) -> Result<Value, ClientError> {
        let url = self.url(&["flows", "read-models", read_model, "rebuild"], &[]);
        self.answer(url.clone(), self.http.post(url)).await
    }

    /// The progress of every policy and read model (`GET /flows`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Unreachable`] if no host answers.
    pub async fn flows(&self) -> Result<Value, ClientError> {
        let url = self.url(&["flows"], &[]);
        self.answer(url.clone(), self.http.get(url)).await
    }

    /// The host's health.
    ///
    /// # Errors
    ///
    /// [`ClientError::Unreachable`] if no host answers.
    pub async fn health(&self) -> Result<Value, ClientError> {
        let url = self.url(&["healthz"], &[]);
        self.answer(url.clone(), self.http.get(url)).await
    }

    /// The base URL with path segments appended, each percent-encoded, so
    /// ids with `/`, spaces or unicode travel intact.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked in new").pop_if_empty().extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn answer(&self, url: Url, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let unreachable = |e: reqwest::Error| ClientError::Unreachable { url: url.to_string(), cause: cause(&e) };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(unreachable)?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            url: url.to_string(),
            status,
            cause: e.to_string(),
        })?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(ClientError::from_answer(status, body))
    }
}

/// reqwest's error with its sources, which say what actually went wrong.
fn cause(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
