//! The cluster's timing and size settings, their defaults, and the checks
//! that keep the timeouts in the order safety needs.

use super::shard::{DEFAULT_SHARDS, MAX_SHARDS};
use std::time::Duration;

/// Settings of one node's [`Node`](super::Node). Every node of a cluster
/// should use the same values; see the [module docs](super) for what each
/// timeout trades.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Shards of a new cluster (the first map fixes it; later maps keep theirs).
    pub shards: u32,
    /// How often a node renews its member key.
    pub heartbeat_interval: Duration,
    /// How long a node may serve after sending a heartbeat the store
    /// acknowledged, measured on its own clock.
    pub member_lease: Duration,
    /// How long the leader waits, on its clock, without seeing a member's key
    /// change before it expels the member.
    pub failure_timeout: Duration,
    /// How often the leader renews its claim.
    pub leader_renew: Duration,
    /// How long a leader acts after sending a renewal the store acknowledged.
    pub leader_lease: Duration,
    /// How long the others wait without seeing the claim change before one
    /// tries to take over.
    pub leader_timeout: Duration,
    /// The largest relative difference in rate between two nodes' clocks
    /// (0.05: one clock may run 5% faster than another over a lease).
    pub max_drift: f64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            shards: DEFAULT_SHARDS,
            heartbeat_interval: Duration::from_millis(250),
            member_lease: Duration::from_millis(1500),
            failure_timeout: Duration::from_millis(2500),
            leader_renew: Duration::from_millis(250),
            leader_lease: Duration::from_millis(1500),
            leader_timeout: Duration::from_millis(2500),
            max_drift: 0.05,
        }
    }
}

/// A setting that would break the protocol's timing argument.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("shards must be between 1 and {MAX_SHARDS}, not {0}")]
    Shards(u32),
    #[error("max_drift must be between 0 and 0.5, not {0}")]
    Drift(f64),
    #[error("{what} must be at least 1 ms")]
    Zero { what: &'static str },
    #[error(
        "{lease} ({lease_ms} ms) must be at least twice {interval} ({interval_ms} ms), so one lost renewal does not end it"
    )]
    LeaseTooShort { lease: &'static str, lease_ms: u64, interval: &'static str, interval_ms: u64 },
    #[error(
        "{timeout} ({timeout_ms} ms) must be at least {lease} × (1 + max_drift) + {interval} = {needed_ms} ms, \
         or a slow clock could still be serving when its work is given away"
    )]
    TimeoutTooShort {
        timeout: &'static str,
        timeout_ms: u64,
        lease: &'static str,
        interval: &'static str,
        needed_ms: u64,
    },
}

/// The settings in milliseconds, as the state machine uses them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub heartbeat: u64,
    pub member_lease: u64,
    pub failure_timeout: u64,
    pub leader_renew: u64,
    pub leader_lease: u64,
    pub leader_timeout: u64,
}

impl ClusterConfig {
    /// Checks that the timeouts are in the order safety needs.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(ConfigError::Shards(self.shards));
        }
        if !(0.0..=0.5).contains(&self.max_drift) {
            return Err(ConfigError::Drift(self.max_drift));
        }
        let t = self.timing();
        for (what, ms) in [
            ("heartbeat_interval", t.heartbeat),
            ("member_lease", t.member_lease),
            ("failure_timeout", t.failure_timeout),
            ("leader_renew", t.leader_renew),
            ("leader_lease", t.leader_lease),
            ("leader_timeout", t.leader_timeout),
        ] {
            if ms == 0 {
                return Err(ConfigError::Zero { what });
            }
        }
        let pairs = [
            ("member_lease", t.member_lease, "heartbeat_interval", t.heartbeat, "failure_timeout", t.failure_timeout),
            ("leader_lease", t.leader_lease, "leader_renew", t.leader_renew, "leader_timeout", t.leader_timeout),
        ];
        for (lease, lease_ms, interval, interval_ms, timeout, timeout_ms) in pairs {
            if lease_ms < 2 * interval_ms {
                return Err(ConfigError::LeaseTooShort { lease, lease_ms, interval, interval_ms });
            }
            let needed_ms = (lease_ms as f64 * (1.0 + self.max_drift)).ceil() as u64 + interval_ms;
            if timeout_ms < needed_ms {
                return Err(ConfigError::TimeoutTooShort { timeout, timeout_ms, lease, interval, needed_ms });
            }
        }
        Ok(())
    }

    pub(crate) fn timing(&self) -> Timing {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timing {
            heartbeat: ms(self.heartbeat_interval),
            member_lease: ms(self.member_lease),
            failure_timeout: ms(self.failure_timeout),
            leader_renew: ms(self.leader_renew),
            leader_lease: ms(self.leader_lease),
            leader_timeout: ms(self.leader_timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(ClusterConfig::default().validate(), Ok(()));
    }

    #[test]
    fn timeouts_out_of_order_are_refused() {
        let base = ClusterConfig::default();
        let short = ClusterConfig { failure_timeout: Duration::from_millis(1800), ..base.clone() };
        let err = short.validate().unwrap_err();
        assert_eq!(
            err,
            ConfigError::TimeoutTooShort {
                timeout: "failure_timeout",
                timeout_ms: 1800,
                lease: "member_lease",
                interval: "heartbeat_interval",
                needed_ms: 1825
            }
        );
        assert!(err.to_string().starts_with("failure_timeout (1800 ms) must be at least member_lease"));
        let lease = ClusterConfig { leader_lease: Duration::from_millis(400), ..base.clone() };
        assert!(matches!(lease.validate(), Err(ConfigError::LeaseTooShort { lease: "leader_lease", .. })));
        assert_eq!(ClusterConfig { shards: 0, ..base.clone() }.validate(), Err(ConfigError::Shards(0)));
        assert_eq!(ClusterConfig { max_drift: 1.0, ..base.clone() }.validate(), Err(ConfigError::Drift(1.0)));
        let zero = ClusterConfig { heartbeat_interval: Duration::ZERO, ..base };
        assert_eq!(zero.validate(), Err(ConfigError::Zero { what: "heartbeat_interval" }));
    }
}
