//! Retries: which calls, on which failures, and how long to wait.
//!
//! | call | retried on |
//! |---|---|
//! | `validate`, `get_grant`, `list_grants` (reads) | UNAVAILABLE, deadline, RESOURCE_EXHAUSTED, CANCELLED |
//! | `claim` (always with a `claim_key`, made once per `claim()` call) | the same: a retry with the same key gets the original outcome and consumes nothing more |
//! | `revoke` (revoking twice revokes once) | the same; `revoked` counts what the last attempt revoked |
//! | `mint`, `delegate`, `rotate` | only when the request provably did nothing: the connection could not be made, or Tessera shed the call (RESOURCE_EXHAUSTED) |
//!
//! A Mint whose reply was lost (UNAVAILABLE after the request left, or a
//! deadline) may have minted: retrying it could mint a second token, and
//! retrying a Rotate that succeeded would fail and lose the new token. So
//! those errors are returned, never retried. Everything else (bad input,
//! keys, roles, NOT_FOUND) is returned at once.

use std::time::Duration;

use rand::{TryRng, rngs::SysRng};

/// How a call is retried. The whole call, retries and waits included, is
/// bounded by the client's timeout ([`Client::with_timeout`](crate::Client::with_timeout)).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The longest one attempt may take before it counts as lost (sent to
    /// Tessera as the call's `grpc-timeout`), within the call's timeout.
    pub attempt_timeout: Duration,
    /// The wait before the first retry; each next one doubles, up to
    /// `max_backoff`. The actual wait is drawn uniformly from zero to that
    /// ("full jitter"), so a crowd of clients does not retry in step.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            attempt_timeout: Duration::from_secs(3),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(16);
        let cap = self
            .initial_backoff
            .saturating_mul(1 << shift)
            .min(self.max_backoff);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % (nanos + 1))
    }
}

/// How safe a call is to repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotence {
    /// Repeating it does nothing more than doing it once.
    Idempotent,
    /// Repeating it after it ran does something twice: retry only what
    /// provably never ran.
    OnlyIfNotDone,
}

fn random_u64() -> u64 {
    // The OS RNG; if it fails there is no jitter, which is still correct.
    SysRng.try_next_u64().unwrap_or(0)
}

/// A fresh `claim_key`: 32 random bytes, hex (64 characters).
pub(crate) fn claim_key() -> String {
    let mut bytes = [0u8; 32];
    SysRng
        .try_fill_bytes(&mut bytes)
        .expect("the OS random number generator works");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let policy = RetryPolicy::default();
        for attempt in 1..40 {
            let cap = policy
                .initial_backoff
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(policy.max_backoff);
            assert!(policy.backoff(attempt) <= cap);
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| policy.backoff(5)).collect();
        assert!(draws.len() > 1, "jitter varies the wait");
    }

    #[test]
    fn claim_keys_are_fresh() {
        let (a, b) = (claim_key(), claim_key());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
