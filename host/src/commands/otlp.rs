//! `--otlp-endpoint`: the spans of `load` exported over OTLP.
//!
//! OTLP/HTTP with protobuf bodies, posted by the batch span processor's own
//! thread with a blocking reqwest client (the reqwest the CLI already uses;
//! no gRPC stack): a command only hands its finished spans to a bounded
//! queue, and a full queue drops spans, never waits. Batches go out every
//! 5 s (or at 512 spans); the standard `OTEL_BSP_*` variables tune the
//! processor (`OTEL_BSP_SCHEDULE_DELAY` in ms, `OTEL_BSP_MAX_QUEUE_SIZE`, …)
//! and `OTEL_RESOURCE_ATTRIBUTES` adds resource attributes. On exit,
//! [`Exporter::shutdown`] sends what is still queued.
//!
//! Without the flag none of this exists: the subscriber is the plain
//! formatter it always was, and the doors open no spans of their own
//! ([`ApiConfig::trace_spans`](aether_host::api::ApiConfig::trace_spans)).

use anyhow::Context;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::time::Duration;

/// The OTLP flag of `load`.
#[derive(Debug, clap::Args)]
pub struct OtlpArgs {
    /// Export spans over OTLP/HTTP (protobuf) to this collector, e.g.
    /// http://localhost:4318 (they are posted to <URL>/v1/traces). A command
    /// sent through several nodes is one trace; a `traceparent` header from
    /// the client makes it part of the client's. Spans at `info` and above
    /// go, whatever --log keeps.
    #[arg(long, env = "AETHER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// Spans on their way to a collector.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// An exporter to the collector at `endpoint`, naming this process
    /// `aether-host` with `node` as its `service.instance.id`. Call it
    /// outside any Tokio runtime: its HTTP client brings its own.
    ///
    /// # Errors
    ///
    /// An endpoint that is not a URL.
    pub fn start(endpoint: &str, node: &str) -> anyhow::Result<Self> {
        let url = traces_url(endpoint);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(&url)
            .with_timeout(Duration::from_secs(10))
            .build()
            .with_context(|| format!("--otlp-endpoint {endpoint}"))?;
        let resource = Resource::builder()
            .with_service_name("aether-host")
            .with_attributes([
                KeyValue::new("service.instance.id", node.to_owned()),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        Ok(Self { provider })
    }

    /// The subscriber layer that turns `tracing` spans into OpenTelemetry ones.
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("aether-host"))
    }

    /// Sends the spans still queued (waiting up to the export timeout) and stops.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("aether-host: not every span was exported: {e}");
        }
    }
}

/// Where spans are posted: `<endpoint>/v1/traces`, as OpenTelemetry's
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is read, unless the endpoint names that
/// path already.
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_posted_to_the_traces_path() {
        assert_eq!(traces_url("http://localhost:4318"), "http://localhost:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/otlp/"), "http://c:4318/otlp/v1/traces");
        assert_eq!(traces_url("https://c/v1/traces"), "https://c/v1/traces");
    }
}
