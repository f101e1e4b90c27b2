//! `--otlp-endpoint`: real hosts export their spans to a small OTLP/HTTP
//! collector run by the test (an axum server decoding the protobuf export
//! requests), and a command keeps the trace its client started, through a
//! forward between nodes and through the NATS door.

use super::harness::{SHARDS, map, settled};
use super::support::{Host, Http};
use aether_host::cluster::shard_of;
use aether_host::names::NatsNames;
use aether_testkit::nats::NatsServer;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One span as the collector received it; ids in lower-case hex.
#[derive(Debug, Clone)]
struct Received {
    /// The exporting process's `service.instance.id` (its node id).
    node: String,
    service: String,
    name: String,
    trace: String,
    span: String,
    parent: String,
}

/// An OTLP/HTTP collector on `127.0.0.1:0` keeping every span it is sent.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let app = axum::Router::new().route("/v1/traces", axum::routing::post(receive)).with_state(spans.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Collector { url, spans, server }
    }

    /// The spans of `trace` received so far.
    fn trace(&self, trace: &str) -> Vec<Received> {
        self.spans.lock().unwrap().iter().filter(|s| s.trace == trace).cloned().collect()
    }

    /// Waits (at most 30 s) until `done` holds for the spans of `trace`.
    async fn wait_for(&self, trace: &str, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.trace(trace);
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "no {what} within 30 s; spans of the trace: {spans:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(spans): State<Arc<Mutex<Vec<Received>>>>, body: Bytes) -> impl IntoResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let text = |attributes: &[KeyValue], key: &str| {
        attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            _ => None,
        })
    };
    let mut received = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let node = text(&resource.attributes, "service.instance.id").unwrap_or_default();
        let service = text(&resource.attributes, "service.name").unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.push(Received {
                node: node.clone(),
                service: service.clone(),
                name: span.name,
                trace: hex(&span.trace_id),
                span: hex(&span.span_id),
                parent: hex(&span.parent_span_id),
            });
        }
    }
    let reply = ExportTraceServiceResponse::default().encode_to_vec();
    ([(header::CONTENT_TYPE, "application/x-protobuf")], reply).into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh client span context: (trace id, span id, `traceparent`).
fn client_context() -> (String, String, String) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let traceparent = format!("00-{trace}-{span}-01");
    (trace, span, traceparent)
}

/// The names of the spans from `span` up its parents to the client's,
/// with the node of each; panics if the chain breaks before it gets there.
fn chain<'a>(spans: &'a [Received], mut span: &'a Received, client: &str) -> Vec<(String, String)> {
    let mut path = vec![(span.node.clone(), span.name.clone())];
    while span.parent != client {
        span = spans.iter().find(|s| s.span == span.parent).unwrap_or_else(|| {
            panic!("the chain {path:?} breaks at a parent {} not received: {spans:#?}", span.parent)
        });
        path.push((span.node.clone(), span.name.clone()));
    }
    path
}

const POST_COMMAND: &str = "POST /actors/{aggregate}/{id}/commands/{command}";

/// Two nodes export to one collector. A command with a client's
/// `traceparent`, sent over HTTP to the node that does not serve the
/// account's shard, is one trace over both nodes: the serving node's
/// `command` span is the child of its `shard` span, whose parent is the
/// sender's `forward` span, child of its HTTP span, child of the client's.
/// A command over the NATS door with a `traceparent` header joins that
/// trace too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_forwarded_between_nodes_stays_the_clients_trace() {
    let collector = Collector::start().await;
    let server = NatsServer::start();
    let url = server.url();
    // Batches every 100 ms rather than every 5 s, so the test need not wait.
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let node = |id| Host::load_with_env(&["--nats", &url, "--node-id", id, "--otlp-endpoint", &collector.url], &env);
    let (a, b) = (node("a"), node("b"));
    settled(&[&a, &b], 2).await;
    let map = map(&server).await;
    let owner = |id: &str| map.owner(shard_of("Account", id, SHARDS)).unwrap().id.to_string();
    let account = (0..).map(|i| format!("traced-{i}")).find(|id| owner(id) == "b").unwrap();

    // Over HTTP to `a`, which forwards to `b`.
    let (trace, client, traceparent) = client_context();
    let path = format!("/actors/Account/{account}/commands/Open");
    let answer = Http::new(&a).post(&path, r#"{"owner": "o"}"#, &[("traceparent", &traceparent)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // a's HTTP span ends last, after its forward span: with it, the chain is in.
    let spans = collector
        .wait_for(&trace, "b's command span and a's HTTP span", |spans| {
            spans.iter().any(|s| s.node == "b" && s.name == "command")
                && spans.iter().any(|s| s.node == "a" && s.name == POST_COMMAND)
        })
        .await;
    assert!(spans.iter().all(|s| s.service == "aether-host"), "{spans:#?}");
    let command = spans.iter().find(|s| s.node == "b" && s.name == "command").unwrap();
    let path = chain(&spans, command, &client);
    let expected = [("b", "command"), ("b", "shard"), ("a", "forward"), ("a", POST_COMMAND)];
    let expected: Vec<(String, String)> = expected.iter().map(|(n, s)| ((*n).to_owned(), (*s).to_owned())).collect();
    assert_eq!(path, expected, "from b's command span up to the client's");
    assert!(!spans.iter().any(|s| s.node == "a" && s.name == "command"), "a ran the command too: {spans:#?}");

    // Over the NATS door, to whichever node takes it.
    let (trace, client, traceparent) = client_context();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", traceparent.as_str());
    let body = format!(r#"{{"id": "{account}", "command": "Deposit", "payload": {{"amount": 5}}}}"#);
    let nats = server.client().await;
    let subject = NatsNames::new(None).commands("bank", "Account");
    let reply = nats.request_with_headers(subject.clone(), headers, body.into()).await.unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["status"], 200, "{reply}");
    let spans = collector
        .wait_for(&trace, "b's command span and the door's", |spans| {
            spans.iter().any(|s| s.node == "b" && s.name == "command") && spans.iter().any(|s| s.name == subject)
        })
        .await;
    let command = spans.iter().find(|s| s.node == "b" && s.name == "command").unwrap();
    let path = chain(&spans, command, &client);
    assert_eq!(path.last().unwrap().1, subject, "the NATS door's span is the client's child: {path:?}");
}

/// One host, no cluster, the processor's default 5 s between batches: a
/// command's spans (its `command` span the child of the HTTP span, the
/// child of the client's) are sent on the way out after Ctrl-C; they are at
/// the collector when the process has exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_are_exported_on_exit() {
    let collector = Collector::start().await;
    let mut host = Host::load(&["--memory", "--otlp-endpoint", &collector.url]);
    let (trace, client, traceparent) = client_context();
    let path = "/actors/Account/solo/commands/Open";
    let answer = Http::new(&host).post(path, r#"{"owner": "o"}"#, &[("traceparent", &traceparent)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(host.interrupt().success(), "{}", host.stderr());
    // The collector answered each export before the host could exit.
    let spans = collector.trace(&trace);
    let command = spans.iter().find(|s| s.name == "command").unwrap_or_else(|| panic!("no command span: {spans:#?}"));
    let names: Vec<String> = chain(&spans, command, &client).into_iter().map(|(_, name)| name).collect();
    assert_eq!(names, ["command", POST_COMMAND]);
}
