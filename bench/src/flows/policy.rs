//! The `TransferSaga` policy: a log of started transfers between funded
//! accounts, reacted to until every transfer has completed. Each transfer
//! is three reactions and three commands: `Started` → `Account.Debit`,
//! `Debited` → `Account.Credit`, `Credited` → `Transfer.Complete`.
//!
//! - **Hosted**: the host's saga runner (guest `react` off the workers, a
//!   recorded-rejection lookup per command, each command through
//!   `Runtime::execute` with its derived id, a checkpoint per batch).
//! - **Native runner**: the same loop here, with `TransferSaga::react`
//!   called natively on the decoded event; the commands go through the same
//!   runtime (the aggregates are the guest's in both), with ids of the same
//!   kind (chosen by the caller). The ratio is the cost of hosting the policy.
//! - **Raw**: `PolicyVm::react`, 256 inputs a call, beside decoding, reacting
//!   and encoding natively.

use super::{BATCH, Hosted, Pair, append, envelope, hosted_run, in_set, spawned, whole_log};
use crate::util::median;
use aether_guest::codec;
use aether_guest::{Messages, Policy};
use aether_host::flow::{Kind, MemoryViews, ViewStore};
use aether_host::store::{ActorId, RecordedEvent};
use aether_host::wasm::{LoggedEvent, PolicyInput};
use aether_host::{CommandOutcome, CommandRequest, DomainComponent, MemoryStore, Runtime, RuntimeConfig};
use bank::transfer::SagaEvent;
use bank::{AccountEvent, TransferEvent, TransferSaga};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The figures of the policy half.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyFigures {
    pub events: Pair,
    pub commands: Pair,
    pub react: Pair,
    pub execute_share: f64,
    pub views_us_per_event: f64,
    pub events_total: u64,
}

/// A runtime on a fresh memory store holding `accounts` funded accounts and
/// `transfers` started transfers among them.
async fn preloaded(component: &DomainComponent, accounts: usize, transfers: usize) -> anyhow::Result<Runtime> {
    let store = Arc::new(MemoryStore::new());
    let split = |e: &AccountEvent| codec::split(e).map_err(anyhow::Error::msg);
    for i in 0..accounts {
        let opened = split(&AccountEvent::Opened { owner: format!("owner-{}", i % 7) })?;
        let funded = split(&AccountEvent::Deposited { amount: 1 << 40 })?;
        append(&*store, &ActorId::new("Account", account(i)), 0, vec![opened, funded]).await?;
    }
    for t in 0..transfers {
        let (from, to) = (t % accounts, (t * 7 + 1 + t / accounts) % accounts);
        let to = if to == from { (to + 1) % accounts } else { to };
        let started = TransferEvent::Started { from: account(from), to: account(to), amount: 1 + t as u64 % 100 };
        let started = codec::split(&started).map_err(anyhow::Error::msg)?;
        append(&*store, &ActorId::new("Transfer", format!("t-{t}")), 0, vec![started]).await?;
    }
    Ok(Runtime::new(component.clone(), store, RuntimeConfig::default()))
}

fn account(i: usize) -> String {
    format!("acc-{i}")
}

/// What the native runner did.
#[derive(Debug, Clone, Copy)]
struct NativeRun {
    seconds: f64,
    handled: u64,
    sent: u64,
    executing: Duration,
}

/// The host's runner loop with the saga called natively.
async fn native_runner(runtime: Runtime) -> anyhow::Result<NativeRun> {
    let store = runtime.store().clone();
    let views = MemoryViews::default();
    let parts = SagaEvent::parts();
    let started = Instant::now();
    let (mut checkpoint, mut handled, mut sent, mut executing) = (0, 0, 0, Duration::ZERO);
    loop {
        store.log_head().await?;
        let batch = store.read_log(checkpoint, BATCH).await?;
        let Some(last) = batch.last().map(|c| c.position) else { break };
        for entry in &batch {
            for event in entry.events.iter().filter(|e| in_set(&parts, &entry.actor.aggregate, &e.name)) {
                handled += 1;
                let cause = format!("{}@{}", entry.actor, event.version);
                let reaction = TransferSaga::react(&envelope::<SagaEvent>(&entry.actor, event)?);
                for (index, command) in reaction.into_iter().enumerate() {
                    let (aggregate, name, payload) = command.command.encode().map_err(anyhow::Error::msg)?;
                    let command_id = format!("native-{cause}/{index}");
                    // As the host's runner: a rejection recorded before is not sent again.
                    anyhow::ensure!(views.get("outcomes/policy/TransferSaga", &command_id).await?.is_none());
                    let request = CommandRequest {
                        aggregate: aggregate.to_owned(),
                        id: command.to,
                        command: name,
                        payload,
                        command_id: Some(command_id),
                        correlation_id: Some(event.provenance.correlation_id.to_string()),
                        causation_id: Some(cause.clone()),
                        ..CommandRequest::default()
                    };
                    let t = Instant::now();
                    let outcome = runtime.execute(request).await?;
                    executing += t.elapsed();
                    match outcome {
                        CommandOutcome::Accepted { .. } => sent += 1,
                        CommandOutcome::Rejected { code, message } => anyhow::bail!("rejected: {code}: {message}"),
                    }
                }
            }
        }
        let write = ("policy/TransferSaga".to_owned(), Some(last.to_be_bytes().to_vec()));
        views.write("checkpoints", vec![write]).await?;
        checkpoint = last;
    }
    Ok(NativeRun { seconds: started.elapsed().as_secs_f64(), handled, sent, executing })
}

/// Runs the hosted and the native runner `rounds` times each (alternating
/// which goes first), then the raw calls on the events they reacted to.
///
/// # Errors
///
/// A guest fault, a rejected command, or the two sides disagreeing on what
/// they reacted to and sent.
pub fn run(
    tokio: &tokio::runtime::Runtime,
    component: &DomainComponent,
    accounts: usize,
    transfers: usize,
    rounds: usize,
) -> anyhow::Result<PolicyFigures> {
    let expected = 3 * transfers as u64;
    let (mut hosted, mut native, mut hosted_sent, mut native_sent) = (vec![], vec![], vec![], vec![]);
    let (mut shares, mut views) = (vec![], vec![]);
    let mut inputs = Vec::new();
    for round in 0..rounds {
        for side in [round % 2, 1 - round % 2] {
            let runtime = tokio.block_on(preloaded(component, accounts, transfers))?;
            if side == 0 {
                let h: Hosted = tokio.block_on(hosted_run(&runtime, Kind::Policy, TransferSaga::NAME))?;
                anyhow::ensure!(
                    h.handled == expected && h.sent == expected,
                    "the hosted saga reacted to {} events and sent {} commands, not {expected} each",
                    h.handled,
                    h.sent
                );
                hosted.push(h.handled as f64 / h.seconds);
                hosted_sent.push(h.sent as f64 / h.seconds);
                views.push(h.views_seconds * 1e6 / h.handled as f64);
            } else {
                let n = tokio.block_on(spawned(native_runner(runtime.clone())))?;
                anyhow::ensure!(
                    n.handled == expected && n.sent == expected,
                    "the native saga reacted to {} events and sent {} commands, not {expected} each",
                    n.handled,
                    n.sent
                );
                native.push(n.handled as f64 / n.seconds);
                native_sent.push(n.sent as f64 / n.seconds);
                shares.push(n.executing.as_secs_f64() / n.seconds);
                if inputs.is_empty() {
                    let parts = SagaEvent::parts();
                    let log = tokio.block_on(whole_log(&**runtime.store()))?;
                    inputs = log
                        .into_iter()
                        .filter(|(_, actor, e)| in_set(&parts, &actor.aggregate, &e.name))
                        .map(|(_, actor, e)| (actor, e))
                        .collect();
                }
            }
        }
    }
    let (mut raw, mut raw_native) = (vec![], vec![]);
    for _ in 0..rounds {
        let (seconds, sent) = react_in_guest(component, &inputs)?;
        anyhow::ensure!(sent == expected, "the guest's react sent {sent} commands, not {expected}");
        raw.push(inputs.len() as f64 / seconds);
        let (seconds, sent) = react_natively(&inputs)?;
        anyhow::ensure!(sent == expected, "the native react sent {sent} commands, not {expected}");
        raw_native.push(inputs.len() as f64 / seconds);
    }
    Ok(PolicyFigures {
        events: Pair { hosted: median(&hosted), native: median(&native) },
        commands: Pair { hosted: median(&hosted_sent), native: median(&native_sent) },
        react: Pair { hosted: median(&raw), native: median(&raw_native) },
        execute_share: median(&shares),
        views_us_per_event: median(&views),
        events_total: expected,
    })
}

/// `PolicyVm::react` on the inputs, `BATCH` a call: seconds, commands returned.
fn react_in_guest(component: &DomainComponent, inputs: &[(ActorId, RecordedEvent)]) -> anyhow::Result<(f64, u64)> {
    let mut vm = component.policy_vm(TransferSaga::NAME)?;
    let started = Instant::now();
    let mut sent = 0;
    for chunk in inputs.chunks(BATCH) {
        let refs: Vec<PolicyInput<'_>> =
            chunk.iter().map(|(actor, event)| PolicyInput::Event(LoggedEvent { actor, event })).collect();
        for reaction in vm.react(&refs)? {
            sent += reaction?.len() as u64;
        }
    }
    Ok((started.elapsed().as_secs_f64(), sent))
}

/// The same natively: decode as the guest does, react, encode each command.
fn react_natively(inputs: &[(ActorId, RecordedEvent)]) -> anyhow::Result<(f64, u64)> {
    let started = Instant::now();
    let mut sent = 0;
    for chunk in inputs.chunks(BATCH) {
        for (actor, event) in std::hint::black_box(chunk) {
            for command in TransferSaga::react(&envelope::<SagaEvent>(actor, event)?) {
                let encoded = command.command.encode().map_err(anyhow::Error::msg)?;
                std::hint::black_box((command.to, encoded));
                sent += 1;
            }
        }
    }
    Ok((started.elapsed().as_secs_f64(), sent))
}
