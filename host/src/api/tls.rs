//! TLS for the HTTP listener: rustls with the ring provider (the one
//! async-nats already uses), a certificate chain and key from PEM files.
//!
//! Handshakes run in tasks of their own, with a deadline, so a client that
//! stalls mid-handshake does not hold up the others; the router sees only
//! connections whose handshake completed.

use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 1024;

/// A server certificate and key, ready to serve HTTPS.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<rustls::ServerConfig>,
}

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {}: {cause}", path.display())]
    Read { path: PathBuf, cause: io::Error },
    #[error("no PEM certificate in {what}: {cause}")]
    Certificate { what: String, cause: String },
    #[error("no PEM private key in {what}: {cause} (PKCS#8, PKCS#1 or SEC1)")]
    Key { what: String, cause: String },
    #[error("the certificate and key do not go together: {0}")]
    Mismatch(rustls::Error),
}

impl TlsConfig {
    /// Reads a PEM certificate chain (the server's first) and its private key.
    ///
    /// # Errors
    ///
    /// If a file cannot be read, holds no certificate or key, or the key is
    /// not the certificate's.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| std::fs::read(path).map_err(|cause| TlsError::Read { path: path.to_owned(), cause });
        Self::from_pem(&read(cert)?, &read(key)?, &cert.display().to_string(), &key.display().to_string())
    }

    /// As [`from_pem_files`](Self::from_pem_files), from PEM text; `cert_name`
    /// and `key_name` say where it came from in errors.
    ///
    /// # Errors
    ///
    /// As [`from_pem_files`](Self::from_pem_files).
    pub fn from_pem(cert: &[u8], key: &[u8], cert_name: &str, key_name: &str) -> Result<Self, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Certificate { what: cert_name.to_owned(), cause: e.to_string() })?;
        if chain.is_empty() {
            return Err(TlsError::Certificate { what: cert_name.to_owned(), cause: "the file is empty".into() });
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| TlsError::Key { what: key_name.to_owned(), cause: e.to_string() })?;
        let mut server =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(TlsError::Mismatch)?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(TlsError::Mismatch)?;
        // The router speaks HTTP/1.1 only.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { server: Arc::new(server) })
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

/// A TCP listener whose connections come out TLS, handshake done.
#[derive(Debug)]
pub(super) struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(super) fn new(listener: TcpListener, config: &TlsConfig) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept(listener, TlsAcceptor::from(config.server.clone()), sender));
        Ok(Self { local, ready, acceptor })
    }
}

impl Drop for TlsListener {
    /// Stops accepting: the TCP listener closes with the task.
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The acceptor is gone only when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

async fn accept(listener: TcpListener, acceptor: TlsAcceptor, ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(slot) = handshakes.clone().acquire_owned().await else { return };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to close.
                tracing::warn!(cause = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    drop(slot);
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, cause = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
