//! Guest logs land in the host's `tracing`, under the actor's span.
//!
//! A test binary of its own: tracing caches per-callsite interest process-wide,
//! so a scoped subscriber in a binary where other tests create the same spans
//! concurrently on other threads sees them only sometimes.

use aether_testkit::TestKit;

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime, so the subscriber set on this thread sees the
// guest's calls.
#[tokio::test(flavor = "current_thread")]
async fn guest_logs_appear_under_the_actors_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = aether_testkit::build_component(root.join("examples/bank")).unwrap_or_else(|e| panic!("{e}"));
    let kit = TestKit::from_file(&wasm).await;
    kit.send("Account", "logged", &bank::AccountCommand::Open { owner: "ada".into() }, None).await.unwrap();
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = text.lines().find(|l| l.contains("opening account logged for ada")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("actor{aggregate=Account id=logged}"), "under the actor's span: {line}");
    assert!(line.contains("aether::guest"), "{line}");
}
