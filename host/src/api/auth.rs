//! Optional bearer-token authentication of the HTTP API: with a token
//! configured, every request but `GET /healthz` and `GET /readyz` must carry
//! `Authorization: Bearer <token>`, else it is answered `401 unauthorized`
//! with `WWW-Authenticate: Bearer`.
//!
//! `/healthz` and `/readyz` stay open so load balancers and orchestrators
//! can probe a host without holding its credentials; they reveal only the
//! domain's name, the component's hash, counts and whether the node is in
//! touch with its cluster.

use super::error::{ApiError, ErrorKind};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The token clients must present. Only its SHA-256 is kept, and its
/// `Debug` shows nothing of it.
#[derive(Clone)]
pub struct HttpToken {
    digest: [u8; 32],
}

/// Why a token is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the HTTP token is empty")]
    Empty,
    #[error("the HTTP token must be visible ASCII without spaces (it travels in an `Authorization` header)")]
    NotVisibleAscii,
}

impl HttpToken {
    /// A token; surrounding whitespace (a file's trailing newline) is trimmed.
    ///
    /// # Errors
    ///
    /// If the token is empty or holds anything but visible ASCII.
    pub fn new(token: &str) -> Result<Self, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotVisibleAscii);
        }
        Ok(Self { digest: Sha256::digest(token.as_bytes()).into() })
    }

    /// Whether `presented` is the token, in time independent of where they
    /// differ (and of its length: digests are compared, not the strings).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let difference = digest.iter().zip(&self.digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

impl std::fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpToken(…)")
    }
}

/// The middleware: passes a request with the right token (or to `/healthz`
/// or `/readyz`) on.
pub(super) async fn require_token(State(token): State<HttpToken>, request: Request, next: Next) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let presented = request.headers().get(header::AUTHORIZATION).map(|value| {
        let value = value.as_bytes();
        // The scheme is case-insensitive (RFC 9110 §11.1).
        match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => Some(value[7..].trim_ascii()),
            _ => None,
        }
    });
    let (message, challenge) = match presented {
        Some(Some(presented)) if token.matches(presented) => return next.run(request).await,
        Some(Some(_)) => ("the bearer token is wrong", r#"Bearer realm="aether", error="invalid_token""#),
        Some(None) => ("the `Authorization` header is not `Bearer <token>`", r#"Bearer realm="aether""#),
        None => ("this host requires `Authorization: Bearer <token>`", r#"Bearer realm="aether""#),
    };
    let mut response = ApiError::new(ErrorKind::Unauthorized, message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_matches() {
        let token = HttpToken::new(" s3cret\n").unwrap();
        assert!(token.matches(b"s3cret"));
        assert!(!token.matches(b"s3cre"));
        assert!(!token.matches(b"s3cret "));
        assert!(!token.matches(b""));
        assert_eq!(format!("{token:?}"), "HttpToken(…)");
        assert!(matches!(HttpToken::new(" \n"), Err(TokenError::Empty)));
        assert!(matches!(HttpToken::new("a b"), Err(TokenError::NotVisibleAscii)));
    }
}
