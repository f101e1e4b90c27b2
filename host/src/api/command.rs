//! Running one command for a front door (HTTP or NATS) and shaping its
//! answer: the same JSON and the same error kinds whichever door it came in by.

use super::error::ApiError;
use super::routes::event_json;
use crate::actor::CommandOutcome;
use crate::runtime::{CommandRequest, Runtime};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

/// Runs the command as a task tracked by `tasks`, so a caller that goes
/// away does not cut it in half and shutdown can wait for it, and answers
/// `{"version", "events", "duplicate", "command_id"}`. The task holds `slot`
/// (the door's count of commands in flight) until the command is done.
///
/// # Errors
///
/// A rejection (`422`) and every [`ActorError`](crate::ActorError), as [`ApiError`].
pub(super) async fn execute(
    runtime: &Runtime,
    tasks: &TaskTracker,
    request: CommandRequest,
    slot: impl Send + 'static,
) -> Result<Value, ApiError> {
    let runtime = runtime.clone();
    let outcome = tasks
        .spawn(async move {
            let outcome = runtime.execute(request).await;
            drop(slot);
            outcome
        })
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "fault", format!("the command task failed: {e}"))
        })??;
    match outcome {
        CommandOutcome::Accepted { version, events, duplicate } => {
            let command_id = events.first().map(|e| e.provenance.command_id.clone());
            let events: Vec<Value> = events.iter().map(|e| event_json(e, false)).collect::<Result<_, _>>()?;
            Ok(json!({ "version": version, "events": events, "duplicate": duplicate, "command_id": command_id }))
        }
        CommandOutcome::Rejected { code, message } => Err(ApiError::rejected(code, message)),
    }
}
