//! The one place transient errors of the outside world are retried.
//!
//! Balancer APIs and cloud endpoints blip: a HAProxy socket that refuses
//! connections for a moment, a 503 from an AWS endpoint. Such an error is
//! retried with jittered exponential backoff, bounded in count and so in
//! time (about 20 s in all), before the host is given up on. Clients never
//! loop on their own; they only say whether an error is worth retrying.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::transport::balancer::BalancerError;

/// Attempts after the first.
pub const RETRIES: usize = 8;

/// The delays between attempts: 200 ms doubling to 5 s, jittered, 8 of them.
pub fn delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(RETRIES)
        .build()
}

/// Runs `op` until it succeeds, fails for good, or the retries run out.
pub async fn transient<T, E, Fut>(
    mut op: impl FnMut() -> Fut,
    retryable: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut delays = delays();
    loop {
        match op().await {
            Err(error) if retryable(&error) => match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(error),
            },
            result => return result,
        }
    }
}

/// A balancer call, retried while the balancer is unreachable.
pub async fn balancer<T, Fut>(op: impl FnMut() -> Fut) -> Result<T, BalancerError>
where
    Fut: Future<Output = Result<T, BalancerError>>,
{
    transient(op, BalancerError::retryable).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_outage_shorter_than_the_bound_is_ridden_out() {
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let result: Result<u32, BalancerError> = balancer(|| {
            calls += 1;
            let now = tokio::time::Instant::now();
            async move {
                if now - started < Duration::from_secs(3) {
                    Err(BalancerError::Unreachable {
                        balancer: "lb".into(),
                        reason: "EAGAIN".into(),
                    })
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(7));
        assert!(calls > 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_not_retried_and_an_endless_outage_ends() {
        let mut calls = 0;
        let refused: Result<(), BalancerError> = balancer(|| {
            calls += 1;
            async {
                Err(BalancerError::UnknownServer {
                    balancer: "lb".into(),
                    backend: "app".into(),
                    server: "x".into(),
                })
            }
        })
        .await;
        assert!(refused.is_err());
        assert_eq!(calls, 1);

        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let down: Result<(), BalancerError> = balancer(|| {
            calls += 1;
            async {
                Err(BalancerError::Unreachable {
                    balancer: "lb".into(),
                    reason: "down".into(),
                })
            }
        })
        .await;
        assert!(down.is_err());
        assert_eq!(calls, RETRIES + 1);
        assert!(started.elapsed() < Duration::from_secs(40));
    }
}
