//! `aether-host verify`'s work: a history of recorded commands replayed
//! through a component's `apply` and every command decided again (see
//! `aether_host::verify`). Baseline: a plain replay of the same stored
//! events through the same component, one VM per actor, as activation does.

use crate::util::median;
use aether_host::store::ActorId;
use aether_host::verify::{VerifyConfig, verify};
use aether_host::{CommandOutcome, CommandRequest, DomainComponent, EventStore, MemoryStore, Runtime, RuntimeConfig};
use bank::AccountCommand;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub struct Verify {
    pub events_per_s: f64,
    pub commands_per_s: f64,
    /// The same events replayed, without deciding anything.
    pub replay_events_per_s: f64,
    pub events: u64,
    pub commands: u64,
}

/// Writes `actors` accounts of `per_actor` commands each (one event each,
/// every command recorded) through the runtime, then verifies the component
/// against them `rounds` times.
///
/// # Errors
///
/// A command or the verification failing, or a divergence (v1 against its
/// own history decides everything alike).
pub async fn run(
    component: &DomainComponent,
    actors: usize,
    per_actor: usize,
    rounds: usize,
) -> anyhow::Result<Verify> {
    let store = Arc::new(MemoryStore::new());
    let runtime = Runtime::new(component.clone(), store.clone(), RuntimeConfig::default());
    let ids: Vec<String> = (0..actors).map(|i| format!("v-{i:05}")).collect();
    for n in 0..per_actor {
        let command = match n {
            0 => AccountCommand::Open { owner: "ada".into() },
            n if n % 2 == 1 => AccountCommand::Deposit { amount: 2 + n as u64 % 1000 },
            _ => AccountCommand::Withdraw { amount: 1 },
        };
        let (name, payload) = crate::fixtures::command(&command);
        for id in &ids {
            let request = CommandRequest {
                aggregate: "Account".into(),
                id: id.clone(),
                command: name.clone(),
                payload: payload.clone(),
                ..CommandRequest::default()
            };
            match runtime.execute(request).await? {
                CommandOutcome::Accepted { .. } => {}
                CommandOutcome::Rejected { code, message } => anyhow::bail!("rejected: {code}: {message}"),
            }
        }
    }
    drop(runtime);

    let (mut events, mut commands, mut replays) = (vec![], vec![], vec![]);
    let mut figures = Verify::default();
    for _ in 0..rounds {
        let report = verify(component, &*store, &VerifyConfig::default()).await?;
        let totals = report.totals();
        anyhow::ensure!(report.is_clean(), "the component diverges from its own history: {:?}", report.divergences);
        let seconds = report.elapsed_ms.max(1) as f64 / 1000.0;
        events.push(totals.events as f64 / seconds);
        commands.push(totals.identical as f64 / seconds);
        (figures.events, figures.commands) = (totals.events, totals.identical);

        let started = Instant::now();
        let mut replayed = 0;
        for id in &ids {
            replayed += replay(component, &*store, &ActorId::new("Account", id.as_str())).await?;
        }
        replays.push(replayed as f64 / started.elapsed().as_secs_f64());
    }
    figures.events_per_s = median(&events);
    figures.commands_per_s = median(&commands);
    figures.replay_events_per_s = median(&replays);
    Ok(figures)
}

/// An actor's events through a fresh VM's `apply`, in batches of 512.
async fn replay(component: &DomainComponent, store: &dyn EventStore, actor: &ActorId) -> anyhow::Result<u64> {
    let mut vm = component.replica(&actor.aggregate, &actor.id)?;
    let mut version = 0;
    loop {
        let batch = store.read(actor, version, 512).await?;
        let Some(last) = batch.last() else { return Ok(version) };
        version = last.version;
        vm.apply(&batch)?;
    }
}
