//! How a source failed, as far as its supervisor must know: retry later, or stop and tell an
//! operator.

/// A source task's failure.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Login refused: retrying would not help (and could lock the account). Needs an operator.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Network trouble, a server restart, a timeout: retry with backoff.
    #[error(transparent)]
    Transient(anyhow::Error),
    /// The server refused to open a folder (NO to SELECT): wrong name in the config, or gone.
    #[error("cannot open folder {0}")]
    MissingFolder(String),
}

impl SourceError {
    pub fn is_auth(&self) -> bool {
        matches!(self, SourceError::Auth(_))
    }
}

impl From<anyhow::Error> for SourceError {
    fn from(e: anyhow::Error) -> Self {
        SourceError::Transient(e)
    }
}

/// Exponential backoff with full jitter, from 1 s doubling to a 5 minute ceiling.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    base: std::time::Duration,
    max: std::time::Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(std::time::Duration::from_secs(1), std::time::Duration::from_secs(300))
    }
}

impl Backoff {
    pub fn new(base: std::time::Duration, max: std::time::Duration) -> Self {
        Backoff { attempt: 0, base, max }
    }

    /// The next delay: a random point between half and all of the current step.
    pub fn next_delay(&mut self) -> std::time::Duration {
        let step = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_secs(1));
        assert!(delays[3] >= Duration::from_secs(4));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
