//! Running one command for a front door (HTTP or NATS) and shaping its
//! answer: the same JSON and the same error kinds whichever door it came in by.

use super::error::{ApiError, ErrorKind};
use super::forward::{self, ClusterDoor, Op};
use super::routes::event_json;
use super::trace::TraceContext;
use crate::actor::CommandOutcome;
use crate::runtime::{CommandRequest, Runtime};
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// The longest command, correlation or causation id either door accepts, in bytes.
pub(crate) const MAX_ID_LEN: usize = 256;

/// Checks a command, correlation or causation id as both doors do: 1 to
/// [`MAX_ID_LEN`] bytes of visible ASCII, spaces only inside (what an HTTP
/// header carries intact), so an id recorded in provenance reads the same
/// whichever door it came in by (invariant: provenance). `name` is the
/// header or field the id came in, for the message.
///
/// # Errors
///
/// `400 bad-request` naming the field and the rule.
pub(crate) fn check_id<'a>(name: &str, id: &'a [u8]) -> Result<&'a str, ApiError> {
    let bad = |rule: String| ApiError::new(ErrorKind::BadRequest, format!("`{name}` {rule}"));
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(bad(format!("must be 1 to {MAX_ID_LEN} bytes, not {}", id.len())));
    }
    if !id.iter().all(|b| matches!(b, b' '..=b'~')) || id.first() == Some(&b' ') || id.last() == Some(&b' ') {
        return Err(bad("must be visible ASCII, with spaces only inside".into()));
    }
    Ok(std::str::from_utf8(id).expect("ASCII is UTF-8"))
}

/// Runs the command where its actor lives (in a cluster, on the node serving
/// its shard: see [`forward`]), as a task tracked by `tasks`, so a caller that goes
/// away does not cut it in half and shutdown can wait for it, and answers
/// `{"version", "events", "duplicate", "command_id"}`. The task holds `slot`
/// (the door's count of commands in flight) until the command is done.
/// `trace`: the caller's trace context, carried on if the command is forwarded.
///
/// # Errors
///
/// A rejection (`422`) and every [`ActorError`](crate::ActorError), as [`ApiError`].
pub(super) async fn execute(
    runtime: &Runtime,
    cluster: Option<&ClusterDoor>,
    tasks: &TaskTracker,
    request: CommandRequest,
    trace: &TraceContext,
    slot: impl Send + 'static,
) -> Result<Value, ApiError> {
    match cluster {
        None => execute_here(runtime, tasks, request, trace, slot).await,
        Some(door) => {
            forward::route(door, Op::Command(request), trace, |op, pass| {
                forward::run_here(runtime, tasks, op, trace, pass, slot)
            })
            .await
        }
    }
}

/// As [`execute`], on this node whatever the cluster says.
pub(super) async fn execute_here(
    runtime: &Runtime,
    tasks: &TaskTracker,
    request: CommandRequest,
    trace: &TraceContext,
    slot: impl Send + 'static,
) -> Result<Value, ApiError> {
    let task_runtime = runtime.clone();
    // A task starts in no span: the command's is made a child of the door's
    // (when spans are on) by running the task in it.
    let outcome = tasks
        .spawn(
            async move {
                let outcome = task_runtime.execute(request).await;
                drop(slot);
                outcome
            }
            .instrument(trace.current_span()),
        )
        .await
        .map_err(|e| ApiError::new(ErrorKind::Fault, format!("the command task failed: {e}")))??;
    match outcome {
        // Every accepted command names its id, with or without events.
        CommandOutcome::Accepted { version, events, duplicate, command_id, position } => {
            let events: Vec<Value> = events.iter().map(|e| event_json(e, false)).collect::<Result<_, _>>()?;
            let position = match position {
                0 => head_position(runtime).await,
                appended => appended,
            };
            Ok(json!({
                "version": version,
                "events": events,
                "duplicate": duplicate,
                "command_id": command_id,
                "position": position.to_string(),
            }))
        }
        CommandOutcome::Rejected { code, message } => Err(ApiError::rejected(code, message)),
    }
}

/// The position a reader waits for after a command that appended nothing
/// now: the log's head, past whatever the command may have appended before.
/// 0 if the store cannot tell (a reader then waits for nothing).
async fn head_position(runtime: &Runtime) -> u64 {
    runtime.store().log_head().await.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_visible_ascii() {
        assert_eq!(check_id("k", b"order 17/a").unwrap(), "order 17/a");
        assert_eq!(check_id("k", &[b'x'; MAX_ID_LEN]).unwrap().len(), MAX_ID_LEN);
        for bad in [&b""[..], &[b'x'; MAX_ID_LEN + 1], b" x", b"x ", b"a\tb", "é".as_bytes(), b"a\nb"] {
            let err = check_id("Idempotency-Key", bad).unwrap_err();
            assert_eq!(err.kind(), Some(ErrorKind::BadRequest));
            assert!(err.body["message"].as_str().unwrap().starts_with("`Idempotency-Key` must be"), "{}", err.body);
        }
    }
}
