//! W3C trace context at the doors: the `traceparent` (and `tracestate`) a
//! request arrives with, from an HTTP client, a NATS client or another node,
//! and what a forwarded request carries on, so that a command sent through
//! any node stays one trace.
//!
//! Two modes, chosen by the process (see [`TraceContext::from_http`]):
//!
//! - **Spans on** (the binary exports them: `--otlp-endpoint`, with an
//!   OpenTelemetry layer in its subscriber): every request opens a span,
//!   child of the caller's context when it brought one; a forwarded request
//!   carries its `forward` span's context, and the serving node's span is
//!   that span's child.
//! - **Spans off** (the default): no span is opened and nothing of
//!   OpenTelemetry runs; a context a request arrived with is copied as it
//!   came onto the request it is forwarded as, so a node that exports still
//!   joins the caller's trace. The cost is a header lookup per request, and
//!   two short strings copied when the caller sent the headers.
//!
//! Header names are lower case in NATS headers as in HTTP ones (NATS header
//! names are case-sensitive; `traceparent` is what W3C and OpenTelemetry's
//! NATS instrumentations write).

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const TRACESTATE: &str = "tracestate";

/// The longest `traceparent` or `tracestate` value taken, in bytes: W3C
/// asks vendors to pass on at least 512 characters of `tracestate`; a
/// version-00 `traceparent` has 55.
const MAX_LEN: usize = 512;

/// The trace context one request arrived with, and whether this process
/// opens spans.
#[derive(Debug, Clone, Default)]
pub(crate) struct TraceContext {
    spans: bool,
    parent: Option<String>,
    state: Option<String>,
}

impl TraceContext {
    /// The context of an HTTP request. `spans`: whether this process exports
    /// spans ([`ApiConfig::trace_spans`](super::ApiConfig::trace_spans)).
    pub(crate) fn from_http(headers: &axum::http::HeaderMap, spans: bool) -> Self {
        let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
        Self::new(spans, get(TRACEPARENT), get(TRACESTATE))
    }

    /// The context of a NATS request (a NATS door's client, or another node).
    pub(crate) fn from_nats(headers: Option<&async_nats::HeaderMap>, spans: bool) -> Self {
        let get = |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
        Self::new(spans, get(TRACEPARENT), get(TRACESTATE))
    }

    /// A context taken as it came, unless a value is empty, too long or not
    /// visible ASCII: W3C says such a header is ignored, and this one might
    /// be copied into the headers of a forwarded request. Without a
    /// `traceparent` a `tracestate` means nothing, and is dropped.
    fn new(spans: bool, parent: Option<&str>, state: Option<&str>) -> Self {
        let valid = |v: &&str| !v.is_empty() && v.len() <= MAX_LEN && v.bytes().all(|b| matches!(b, b' '..=b'~'));
        let parent = parent.filter(valid).map(str::to_owned);
        let state = parent.as_ref().and(state.filter(valid)).map(str::to_owned);
        Self { spans, parent, state }
    }

    /// The span a request runs in at a door: `make()`'s, a child of the caller's
    /// context if it brought a valid one, when spans are on; none otherwise
    /// (and `make` is not called).
    pub(crate) fn span(&self, make: impl FnOnce() -> Span) -> Span {
        if !self.spans {
            return Span::none();
        }
        let span = make();
        if self.parent.is_some() {
            let parent = TraceContextPropagator::new().extract(self);
            // Fails only for a span the filter disabled: it has no parent to set.
            let _ = span.set_parent(parent);
        }
        span
    }

    /// `make()`'s span, a child of the current one, when spans are on; none
    /// otherwise (and `make` is not called).
    pub(crate) fn child_span(&self, make: impl FnOnce() -> Span) -> Span {
        if self.spans { make() } else { Span::none() }
    }

    /// The current span when spans are on (for a task spawned to run in it);
    /// none otherwise, without looking.
    pub(crate) fn current_span(&self) -> Span {
        if self.spans { Span::current() } else { Span::none() }
    }

    /// Writes the context a request forwarded from `span` carries: `span`'s
    /// when spans are on and it has one; otherwise the context the request
    /// arrived with, as it came (this node adds no span of its own to the trace).
    pub(crate) fn inject(&self, span: &Span, headers: &mut async_nats::HeaderMap) {
        if self.spans {
            let mut carrier = NatsHeaders { headers, wrote: false };
            TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
            if carrier.wrote {
                return;
            }
        }
        if let Some(parent) = &self.parent {
            headers.insert(TRACEPARENT, parent.as_str());
            if let Some(state) = &self.state {
                headers.insert(TRACESTATE, state.as_str());
            }
        }
    }
}

/// The status a door answers `answer` with.
pub(crate) fn status(answer: &Result<serde_json::Value, super::ApiError>) -> u16 {
    answer.as_ref().map_or_else(|err| err.status.as_u16(), |_| 200)
}

/// Records a door's answer on its span: the status, and OpenTelemetry's
/// error status for a fault of the host (`5xx`; a `4xx` is the caller's, as
/// OpenTelemetry's HTTP server conventions have it).
pub(crate) fn record_status(span: &Span, status: u16) {
    if span.is_none() {
        return;
    }
    span.record("status", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

impl Extractor for TraceContext {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.parent.as_deref(),
            TRACESTATE => self.state.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// The headers of a forwarded request, as the propagator writes them.
struct NatsHeaders<'a> {
    headers: &'a mut async_nats::HeaderMap,
    wrote: bool,
}

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes an empty `tracestate` when there is none.
        let name = match key {
            TRACEPARENT => TRACEPARENT,
            TRACESTATE if !value.is_empty() => TRACESTATE,
            _ => return,
        };
        self.headers.insert(name, value.as_str());
        self.wrote = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn forwarded(context: &TraceContext) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        context.inject(&Span::none(), &mut headers);
        headers
    }

    #[test]
    fn without_spans_a_context_is_passed_on_as_it_came() {
        let mut http = axum::http::HeaderMap::new();
        http.insert(TRACEPARENT, PARENT.parse().unwrap());
        http.insert(TRACESTATE, "congo=t61rcWkgMzE".parse().unwrap());
        let headers = forwarded(&TraceContext::from_http(&http, false));
        assert_eq!(headers.get(TRACEPARENT).map(|v| v.as_str()), Some(PARENT));
        assert_eq!(headers.get(TRACESTATE).map(|v| v.as_str()), Some("congo=t61rcWkgMzE"));

        // From NATS headers alike; no `traceparent`, nothing at all.
        let mut nats = async_nats::HeaderMap::new();
        nats.insert(TRACEPARENT, PARENT);
        assert_eq!(forwarded(&TraceContext::from_nats(Some(&nats), false)).get(TRACEPARENT).unwrap().as_str(), PARENT);
        let mut state_only = async_nats::HeaderMap::new();
        state_only.insert(TRACESTATE, "a=b");
        assert!(forwarded(&TraceContext::from_nats(Some(&state_only), false)).is_empty());
        assert!(forwarded(&TraceContext::from_nats(None, false)).is_empty());
    }

    #[test]
    fn a_malformed_context_is_ignored() {
        let long = "0".repeat(MAX_LEN + 1);
        for bad in ["", "00-é", long.as_str()] {
            let context = TraceContext::new(false, Some(bad), Some("a=b"));
            assert!(context.parent.is_none() && context.state.is_none(), "{bad:?}");
        }
    }

    /// Spans on (an OpenTelemetry layer installed): the door's span joins
    /// the caller's trace, and a forwarded request carries the `forward`
    /// span's own context in that trace, not the caller's as it came.
    #[test]
    fn with_spans_a_forward_carries_its_own_span_in_the_callers_trace() {
        use opentelemetry::trace::{TraceContextExt, TracerProvider};
        use tracing_subscriber::prelude::*;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let context = TraceContext::new(true, Some(PARENT), None);
            let door = context.span(|| tracing::info_span!("door"));
            let _in = door.enter();
            let forward = context.child_span(|| tracing::info_span!("forward"));
            let headers = {
                let mut headers = async_nats::HeaderMap::new();
                context.inject(&forward, &mut headers);
                headers
            };
            let sent = headers.get(TRACEPARENT).unwrap().as_str().to_owned();
            let forward = forward.context().span().span_context().clone();
            let door = door.context().span().span_context().clone();
            assert_eq!(door.trace_id().to_string(), PARENT[3..35], "the door's span is in the caller's trace");
            assert_eq!(sent, format!("00-{}-{}-01", &PARENT[3..35], forward.span_id()));
            assert_ne!(forward.span_id(), door.span_id());
        });
    }

    /// Spans off: no span, and `make` is never called.
    #[test]
    fn without_spans_no_span_is_opened() {
        let context = TraceContext::new(false, Some(PARENT), None);
        assert!(context.span(|| unreachable!("no span is made when spans are off")).is_none());
        assert!(context.current_span().is_none());
    }
}
