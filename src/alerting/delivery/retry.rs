//! Retry: what a failed attempt means, and when to try again. Shared by
//! every sink; a sink only says how one attempt went ([`Failure`]).
//!
//! - Delivered: done.
//! - Rate limited (429): wait `Retry-After` (1 s when absent, at most 60 s),
//!   never less, then retry.
//! - Transient (5xx, timeouts, connection errors): exponential backoff with
//!   full jitter (a random wait up to `backoff_base · 2ⁿ`, capped at
//!   `backoff_max`), until `retry_for` has passed since the first attempt.
//! - Permanent (a refusal such as Slack's `invalid_payload`, or a
//!   configuration error such as a rejected TLS certificate or a redirect):
//!   retrying cannot help, so give up at once with the reason.
//!
//! A delivery can also be told that a newer one replaces it
//! ([`CancellationToken`] `superseded`): the attempt under way finishes, and
//! no retry follows.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Longest `Retry-After` honoured. Slack asks for a few seconds; a larger
/// value is more likely a misbehaving proxy than a plan.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);
/// `Retry-After` assumed when a 429 carries none.
pub const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(1);

/// Why one attempt did not succeed. Reasons never hold a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying after a backoff.
    Transient(String),
    /// The receiver asked us to wait this long.
    RateLimited(Duration),
    /// Retrying cannot help.
    Permanent(String),
}

/// Sends one rendered body to one receiver, once.
pub trait Transport: Send + Sync + 'static {
    /// One attempt. The body is shared, not copied: a retry re-sends the
    /// same bytes.
    fn send(&self, body: Bytes) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// After this many attempts.
    Sent(u32),
    /// Given up: why.
    Failed(String),
    /// A newer delivery replaced this one before it succeeded.
    Superseded,
}

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Give up on transient failures this long after the first attempt.
    pub retry_for: Duration,
}

impl Policy {
    pub fn new(backoff_base: Duration, backoff_max: Duration, retry_for: Duration) -> Policy {
        Policy {
            backoff_base,
            backoff_max: backoff_max.max(backoff_base),
            retry_for,
        }
    }

    /// Full jitter: a uniform wait up to a ceiling that doubles with each
    /// consecutive failure. Spreading retries keeps several poolwatch
    /// instances from hitting a recovering receiver in lockstep.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(20);
        let ceiling = self
            .backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// Sends `body` through `transport` until it is delivered, refused for
/// good, the retry budget is spent, or `superseded` fires. `what` names it
/// in log lines (a title, possibly from requests: logged escaped).
/// `first_over`, when given, is told as soon as the first attempt has
/// ended, however it ended.
pub async fn deliver<T: Transport>(
    transport: &T,
    policy: &Policy,
    body: &Bytes,
    what: &str,
    sink: &'static str,
    superseded: &CancellationToken,
    mut first_over: Option<oneshot::Sender<()>>,
) -> Delivered {
    let give_up_at = Instant::now() + policy.retry_for;
    let mut attempts = 0u32;
    let mut failures = 0u32;
    loop {
        attempts += 1;
        let result = transport.send(body.clone()).await;
        if let Some(tx) = first_over.take() {
            // Whoever waited may have gone; that is theirs to decide.
            let _ = tx.send(());
        }
        let wait = match result {
            Ok(()) => return Delivered::Sent(attempts),
            Err(Failure::Permanent(reason)) => return Delivered::Failed(reason),
            Err(Failure::RateLimited(wait)) => {
                // Never earlier than asked: if the budget ends first, stop.
                if Instant::now() + wait > give_up_at {
                    return Delivered::Failed(format!(
                        "rate limited (429, retry after {}) and the retry budget of {} is spent",
                        human(wait),
                        human(policy.retry_for)
                    ));
                }
                warn!(
                    sink,
                    what,
                    retry_after_secs = wait.as_secs_f64(),
                    "alert delivery rate-limited; waiting"
                );
                wait
            }
            Err(Failure::Transient(reason)) => {
                failures += 1;
                let now = Instant::now();
                if now >= give_up_at {
                    return Delivered::Failed(format!(
                        "{reason} (gave up after {attempts} attempts in {})",
                        human(policy.retry_for)
                    ));
                }
                // A last attempt at the end of the budget rather than none.
                let wait = policy.backoff(failures).min(give_up_at - now);
                warn!(
                    sink,
                    what,
                    attempt = attempts,
                    retry_in_ms = wait.as_millis() as u64,
                    %reason,
                    "alert delivery failed; retrying"
                );
                wait
            }
        };
        if superseded.is_cancelled() {
            return Delivered::Superseded;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = superseded.cancelled() => return Delivered::Superseded,
        }
    }
}

/// `250ms`, `1.5s`, `600s`: durations as people write them in settings.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        let tenths = d.as_millis().div_ceil(100);
        if tenths % 10 == 0 {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling() {
        let policy = Policy::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Duration::from_secs(600),
        );
        for (failures, ceiling_ms) in [(1, 500), (2, 1000), (3, 2000), (7, 30_000), (60, 30_000)] {
            let waits: Vec<Duration> = (0..200).map(|_| policy.backoff(failures)).collect();
            let ceiling = Duration::from_millis(ceiling_ms);
            assert!(waits.iter().all(|w| *w <= ceiling), "{failures}");
            // Spread out, not pinned to the ceiling.
            assert!(waits.iter().any(|w| *w < ceiling / 2), "{failures}");
        }
    }

    #[test]
    fn durations_read_like_settings() {
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_secs(600)), "600s");
    }

    /// Answers from a script, one per attempt, and counts the bodies.
    struct Scripted(Mutex<Vec<Result<(), Failure>>>, Mutex<Vec<Bytes>>);

    impl Transport for Scripted {
        async fn send(&self, body: Bytes) -> Result<(), Failure> {
            self.1.lock().unwrap().push(body);
            self.0.lock().unwrap().remove(0)
        }
    }

    fn policy() -> Policy {
        Policy::new(
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::from_secs(60),
        )
    }

    #[tokio::test]
    async fn transient_failures_are_retried_with_the_same_bytes() {
        let t = Scripted(
            Mutex::new(vec![
                Err(Failure::Transient("503".into())),
                Err(Failure::Transient("timeout".into())),
                Ok(()),
            ]),
            Mutex::new(Vec::new()),
        );
        let body = Bytes::from_static(b"{}");
        let got = deliver(
            &t,
            &policy(),
            &body,
            "x",
            "test",
            &CancellationToken::new(),
            None,
        )
        .await;
        assert_eq!(got, Delivered::Sent(3));
        let sent = t.1.lock().unwrap();
        // Each attempt shares the one rendered body: no copy, no re-render.
        assert!(sent.iter().all(|b| b.as_ptr() == body.as_ptr()));
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried() {
        let t = Scripted(
            Mutex::new(vec![Err(Failure::Permanent("redirect".into())), Ok(())]),
            Mutex::new(Vec::new()),
        );
        let got = deliver(
            &t,
            &policy(),
            &Bytes::new(),
            "x",
            "test",
            &CancellationToken::new(),
            None,
        )
        .await;
        assert_eq!(got, Delivered::Failed("redirect".into()));
        assert_eq!(t.1.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_superseded_delivery_stops_after_its_attempt() {
        let t = Scripted(
            Mutex::new(vec![Err(Failure::Transient("503".into())), Ok(())]),
            Mutex::new(Vec::new()),
        );
        let superseded = CancellationToken::new();
        superseded.cancel();
        let got = deliver(&t, &policy(), &Bytes::new(), "x", "test", &superseded, None).await;
        assert_eq!(got, Delivered::Superseded);
        assert_eq!(t.1.lock().unwrap().len(), 1);
    }
}
