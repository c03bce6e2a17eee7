//! Scheduling policy knobs.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How the scheduler treats leases, failures and stalls. Defaults suit a GPU cluster; tests
/// shorten them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// A lease lasts this long without a heartbeat.
    #[serde(with = "millis")]
    pub lease_ttl: Duration,
    /// Workers are asked to heartbeat this often (must be well below `lease_ttl`).
    #[serde(with = "millis")]
    pub heartbeat_interval: Duration,
    /// A running sweep whose ready stages no live worker can take for this long is reported as
    /// stalled, with the reason.
    #[serde(with = "millis")]
    pub stall_grace: Duration,
    /// A worker not heard from for this long no longer counts as able to take work.
    #[serde(with = "millis")]
    pub worker_timeout: Duration,
    /// Failures of a stage's own code tolerated before it is failed for good (attempts =
    /// budget + 1 at most).
    pub stage_error_budget: u32,
    /// Infrastructure failures (lost leases, machine faults) tolerated before it is failed.
    pub infra_failure_budget: u32,
    /// First retry delay; doubles with each failure of the same kind, up to `backoff_max`.
    #[serde(with = "millis")]
    pub backoff_base: Duration,
    #[serde(with = "millis")]
    pub backoff_max: Duration,
    /// Longest long poll a worker may ask for.
    #[serde(with = "millis")]
    pub max_lease_wait: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            lease_ttl: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(10),
            stall_grace: Duration::from_secs(120),
            worker_timeout: Duration::from_secs(90),
            stage_error_budget: 2,
            infra_failure_budget: 5,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            max_lease_wait: Duration::from_secs(30),
        }
    }
}

impl SchedulerConfig {
    /// Retry delay after the `failures`-th failure (1-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        self.backoff_base.saturating_mul(1u32 << exp).min(self.backoff_max)
    }

    /// Checks the knobs make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_ttl.is_zero() {
            return Err("scheduler.lease_ttl must be positive".into());
        }
        if self.heartbeat_interval >= self.lease_ttl {
            return Err(format!(
                "scheduler.heartbeat_interval ({:?}) must be shorter than scheduler.lease_ttl ({:?})",
                self.heartbeat_interval, self.lease_ttl
            ));
        }
        if self.backoff_base > self.backoff_max {
            return Err("scheduler.backoff_base must not exceed scheduler.backoff_max".into());
        }
        Ok(())
    }
}

/// Durations as integer milliseconds in config files.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = SchedulerConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..SchedulerConfig::default()
        };
        let ms: Vec<u128> = (1..=6).map(|n| c.backoff(n).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(c.backoff(200).as_millis(), 1000);
        assert!(c.validate().is_ok());
        let bad = SchedulerConfig {
            heartbeat_interval: Duration::from_secs(90),
            ..SchedulerConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("heartbeat_interval"));
    }
}
