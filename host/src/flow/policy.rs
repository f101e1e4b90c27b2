//! A policy's runner: reacts to the events it lists and sends the commands
//! its guest returns, effectively once.
//!
//! - **Ids.** A command sent in reply to an event gets an id derived from
//!   the policy, the event (aggregate, actor, version) and its index in the
//!   reaction; one sent in reply to a rejection, from the policy, the
//!   rejected command's id and its index. A batch read again after a crash
//!   sends the same ids, and the target answers each as a duplicate: nothing
//!   is appended twice (invariant: idempotent-commands).
//! - **Rejections** are final: recorded in the `outcomes/policy/<name>`
//!   space under the command's id, counted, and offered once to the policy
//!   as a `rejected` input right after the event that caused them. A batch
//!   read again finds the recorded rejection and does not send the command
//!   again (the target's state may have changed since).
//! - **Faults.** An input whose reaction is an error, whose command the
//!   target cannot take (unknown, undecodable), or whose whole call traps is
//!   parked in `parked/policy/<name>` with its error; the rest go on. An
//!   unavailable target is retried with backoff, the batch unconsumed.

use super::vm::{self, Logged};
use super::{Flows, RunnerStatus, Sent, parked_entry, parked_space};
use crate::runtime::CommandRequest;
use crate::store::{LoggedCommand, StoreError};
use crate::wasm::{CommandToSend, PolicyInput, PolicyVm, RejectedCommand};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;

/// How deep rejections of commands sent for rejections may chain before
/// the input is parked instead.
const MAX_REJECTION_DEPTH: usize = 8;

/// An input the runner owns, to hand to the blocking pool.
#[derive(Debug, Clone)]
enum Input {
    Event(Logged),
    Rejected { position: u64, rejected: RejectedCommand },
}

impl Input {
    fn position(&self) -> u64 {
        match self {
            Input::Event(logged) => logged.position,
            Input::Rejected { position, .. } => *position,
        }
    }

    /// How the input is named where it is parked.
    fn describe(&self) -> String {
        match self {
            Input::Event(logged) => logged.describe(),
            Input::Rejected { rejected, .. } => format!("rejection of {}", rejected.command_id),
        }
    }

    fn as_policy_input(&self) -> PolicyInput<'_> {
        match self {
            Input::Event(logged) => PolicyInput::Event(logged.as_logged()),
            Input::Rejected { rejected, .. } => PolicyInput::Rejected(rejected),
        }
    }

    /// The id of the `index`th command sent in reply, and its causation.
    fn command_id(&self, policy: &str, index: usize) -> (String, String) {
        let cause = match self {
            Input::Event(logged) => format!("{}@{}", logged.actor, logged.event.version),
            Input::Rejected { rejected, .. } => format!("rejected:{}", rejected.command_id),
        };
        let mut hash = Sha256::new();
        for part in [policy, cause.as_str(), &index.to_string()] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let id = u128::from_be_bytes(digest[..16].try_into().expect("a SHA-256 digest has 32 bytes"));
        (format!("policy-{id:032x}"), cause)
    }

    fn correlation(&self) -> Option<String> {
        match self {
            Input::Event(logged) => Some(logged.event.provenance.correlation_id.to_string()),
            Input::Rejected { .. } => None,
        }
    }
}

/// The runner's VM.
pub(super) type Slot = vm::Slot<PolicyVm>;

pub(super) async fn handle(
    flows: &Flows,
    status: &RunnerStatus,
    slot: &mut Option<Slot>,
    batch: Vec<LoggedCommand>,
) -> Result<(), StoreError> {
    let deployment = flows.runtime().component();
    let component = deployment.component();
    let Some(policy) = component.model().policy(&status.name).cloned() else {
        tracing::warn!(policy = %status.name, "the running component has no such policy any more; passing over");
        return Ok(());
    };
    let slot = Slot::of(slot, component, &status.name);
    let wanted = Logged::select(batch, |aggregate, event| policy.reacts_to(aggregate, event));
    let inputs: Vec<Input> = wanted.into_iter().map(Input::Event).collect();
    if inputs.is_empty() {
        return Ok(());
    }
    status.handled.fetch_add(inputs.len() as u64, Ordering::Relaxed);
    let reactions = react(slot, &inputs).await;
    for (input, reaction) in inputs.iter().zip(reactions) {
        match reaction {
            Ok(commands) => send_all(flows, status, slot, input, commands, 0).await?,
            Err(fault) => park(flows, status, input, &fault).await?,
        }
    }
    Ok(())
}

/// Sends a reaction's commands in order; a rejected one is offered back.
async fn send_all(
    flows: &Flows,
    status: &RunnerStatus,
    slot: &mut Slot,
    input: &Input,
    commands: Vec<CommandToSend>,
    depth: usize,
) -> Result<(), StoreError> {
    for (index, command) in commands.into_iter().enumerate() {
        let (command_id, causation) = input.command_id(&status.name, index);
        let rejected = match recorded_rejection(flows, status, &command_id).await? {
            Some(rejected) => rejected,
            None => match send(flows, input, &command, &command_id, causation).await? {
                Sent::Accepted { duplicate } => {
                    if !duplicate {
                        status.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                Sent::Failed(error) => {
                    park(flows, status, input, &format!("`{}.{}` failed: {error}", command.aggregate, command.command))
                        .await?;
                    continue;
                }
                Sent::Rejected { code, message } => {
                    let timestamp_ms = crate::runtime::now_ms();
                    let rejected = RejectedCommand { command, command_id, code, message, timestamp_ms };
                    record_rejection(flows, status, &rejected).await?;
                    status.rejected.fetch_add(1, Ordering::Relaxed);
                    rejected
                }
            },
        };
        if depth >= MAX_REJECTION_DEPTH {
            let why = format!("rejections chained {MAX_REJECTION_DEPTH} deep; the last: {}", rejected.code);
            park(flows, status, input, &why).await?;
            continue;
        }
        let offered = Input::Rejected { position: input.position(), rejected };
        let mut reactions = react(slot, std::slice::from_ref(&offered)).await;
        match reactions.pop().expect("one reaction per input") {
            Ok(commands) => Box::pin(send_all(flows, status, slot, &offered, commands, depth + 1)).await?,
            Err(fault) => park(flows, status, &offered, &fault).await?,
        }
    }
    Ok(())
}

async fn send(
    flows: &Flows,
    input: &Input,
    command: &CommandToSend,
    command_id: &str,
    causation: String,
) -> Result<Sent, StoreError> {
    let request = CommandRequest {
        aggregate: command.aggregate.clone(),
        id: command.actor_id.clone(),
        command: command.command.clone(),
        payload: command.payload.clone(),
        command_id: Some(command_id.to_owned()),
        correlation_id: input.correlation().or_else(|| Some(command_id.to_owned())),
        causation_id: Some(causation),
        fence: None,
    };
    // An error is worth asking again: the batch is retried with backoff.
    flows.sink().send(request).await
}

fn outcomes_space(status: &RunnerStatus) -> String {
    format!("outcomes/{}", super::checkpoint_key(status))
}

async fn recorded_rejection(
    flows: &Flows,
    status: &RunnerStatus,
    command_id: &str,
) -> Result<Option<RejectedCommand>, StoreError> {
    let Some(bytes) = flows.views().get(&outcomes_space(status), command_id).await? else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Unavailable(format!("a recorded outcome of {command_id} does not read: {e}")))?;
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
    let payload = value["payload"].as_array().map(|b| b.iter().filter_map(|x| x.as_u64()).map(|x| x as u8).collect());
    Ok(Some(RejectedCommand {
        command: CommandToSend {
            aggregate: text("aggregate"),
            actor_id: text("actor_id"),
            command: text("command"),
            payload: payload.unwrap_or_default(),
        },
        command_id: command_id.to_owned(),
        code: text("code"),
        message: text("message"),
        timestamp_ms: value["timestamp_ms"].as_u64().unwrap_or(0),
    }))
}

async fn record_rejection(flows: &Flows, status: &RunnerStatus, rejected: &RejectedCommand) -> Result<(), StoreError> {
    let value = serde_json::json!({
        "aggregate": rejected.command.aggregate,
        "actor_id": rejected.command.actor_id,
        "command": rejected.command.command,
        "payload": rejected.command.payload,
        "code": rejected.code,
        "message": rejected.message,
        "timestamp_ms": rejected.timestamp_ms,
    });
    let write = (rejected.command_id.clone(), Some(value.to_string().into_bytes()));
    flows.views().write(&outcomes_space(status), vec![write]).await
}

async fn park(
    flows: &Flows,
    status: &RunnerStatus,
    input: &Input,
    error: &(dyn std::fmt::Display + Sync),
) -> Result<(), StoreError> {
    tracing::warn!(policy = %status.name, input = %input.describe(), %error, "parked a policy's input");
    flows.views().write(&parked_space(status), vec![parked_entry(input.position(), &input.describe(), error)]).await?;
    status.parked.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// One reaction per input: the commands, or why that input failed. A fault
/// of the whole call is narrowed down input by input, each on a fresh VM.
async fn react(slot: &mut Slot, inputs: &[Input]) -> Vec<Result<Vec<CommandToSend>, String>> {
    let call = |vm: &mut PolicyVm, inputs: &[Input]| {
        let refs: Vec<PolicyInput<'_>> = inputs.iter().map(Input::as_policy_input).collect();
        vm.react(&refs)
    };
    match slot.call(inputs, call).await {
        Ok(reactions) => reactions.into_iter().map(|r| r.map_err(|f| f.to_string())).collect(),
        Err(fault) if inputs.len() == 1 => vec![Err(fault.to_string())],
        Err(_) => {
            let mut out = Vec::with_capacity(inputs.len());
            for input in inputs {
                let reaction = match slot.call(std::slice::from_ref(input), call).await {
                    Ok(mut one) => one.pop().expect("one reaction per input").map_err(|f| f.to_string()),
                    Err(fault) => Err(fault.to_string()),
                };
                out.push(reaction);
            }
            out
        }
    }
}
