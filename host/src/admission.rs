//! Admission control: how much work requests can start at once, beyond one
//! command per actor. Activations (a VM built and replayed) and time travel
//! (a scratch VM replayed per request) take a slot each; a request that
//! finds every slot taken waits a short, bounded time and is then answered
//! [`ActorError::Overloaded`] (HTTP `503` with `Retry-After`) instead of
//! queueing without end. The front doors bound their commands in flight the
//! same way (`api`), and a full VM pool is overload too, not a guest fault.

use crate::actor::ActorError;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The bounds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdmissionConfig {
    /// Actors being activated (VM built, snapshot restored, events
    /// replayed) at once.
    pub max_activations: usize,
    /// Time-travel reads (`at_version`) running at once; each replays a
    /// scratch VM, up to the whole history.
    pub max_time_travels: usize,
    /// How long a request waits for a slot before it is turned away.
    pub wait: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self { max_activations: 256, max_time_travels: 8, wait: Duration::from_secs(2) }
    }
}

/// The slots, shared by every actor of a runtime.
#[derive(Debug)]
pub(crate) struct Admission {
    activations: Semaphore,
    time_travels: Semaphore,
    config: AdmissionConfig,
}

impl Admission {
    pub(crate) fn new(config: AdmissionConfig) -> Self {
        Self {
            activations: Semaphore::new(config.max_activations.max(1)),
            time_travels: Semaphore::new(config.max_time_travels.max(1)),
            config,
        }
    }

    /// A slot to activate an actor in.
    pub(crate) async fn activation(&self) -> Result<SemaphorePermit<'_>, ActorError> {
        self.admit(&self.activations, "activations", self.config.max_activations).await
    }

    /// A slot to replay a scratch VM in.
    pub(crate) async fn time_travel(&self) -> Result<SemaphorePermit<'_>, ActorError> {
        self.admit(&self.time_travels, "time-travel reads", self.config.max_time_travels).await
    }

    async fn admit<'a>(
        &self,
        slots: &'a Semaphore,
        what: &'static str,
        limit: usize,
    ) -> Result<SemaphorePermit<'a>, ActorError> {
        // No timer unless the slots are all taken.
        if let Ok(permit) = slots.try_acquire() {
            return Ok(permit);
        }
        match tokio::time::timeout(self.config.wait, slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ActorError::Overloaded { what, limit: limit.max(1) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_for_a_slot_then_is_turned_away() {
        let config = AdmissionConfig { max_activations: 1, wait: Duration::from_millis(100), ..Default::default() };
        let admission = Admission::new(config);
        let held = admission.activation().await.unwrap();
        let started = tokio::time::Instant::now();
        let err = admission.activation().await.unwrap_err();
        assert!(matches!(err, ActorError::Overloaded { what: "activations", limit: 1 }), "{err}");
        assert_eq!(started.elapsed(), Duration::from_millis(100), "it waited the configured time");
        assert!(admission.time_travel().await.is_ok(), "each bound is its own");
        drop(held);
        assert!(admission.activation().await.is_ok(), "a freed slot is taken at once");
    }
}
