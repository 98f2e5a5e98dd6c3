//! `[watch]`'s verdict on a returned host: its real traffic over the watch
//! against the baseline's over the same interval, as two readings of the
//! balancers' per-server counters. Pure: the host task reads, this judges.

use std::collections::HashMap;

use crate::events::WatchVerdict;
use crate::model::playbook::WatchPolicy;
use crate::transport::balancer::ServerCounters;

/// Responses and 5xx over the watch, and their mean response time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    pub requests: u64,
    pub errors: u64,
    pub mean_ms: Option<u64>,
}

impl Traffic {
    /// What `server` answered between two readings; a counter that went
    /// back (the balancer restarted) counts from zero.
    pub fn between(before: &ServerCounters, after: &ServerCounters) -> Self {
        let since = |a: u64, b: u64| if b >= a { b - a } else { b };
        let requests = since(before.responses, after.responses);
        Self {
            requests,
            errors: since(before.errors, after.errors),
            mean_ms: window_mean(before, after, requests),
        }
    }

    /// The sum of several servers' traffic; the mean response time is
    /// weighted by their requests.
    pub fn total<'a>(parts: impl IntoIterator<Item = &'a Traffic>) -> Self {
        let mut total = Traffic::default();
        let (mut weighted, mut weight) = (0u128, 0u128);
        for part in parts {
            total.requests += part.requests;
            total.errors += part.errors;
            if let Some(mean) = part.mean_ms {
                weighted += u128::from(mean) * u128::from(part.requests.max(1));
                weight += u128::from(part.requests.max(1));
            }
        }
        total.mean_ms = (weight > 0).then(|| u64::try_from(weighted / weight).unwrap_or(u64::MAX));
        total
    }

    fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// The mean response time of the `requests` answered between two
/// readings. A balancer whose average slides over its last `n` responses
/// (`a' = a (1 - 1/n) + v/n` per response; HAProxy takes `n` as the
/// server's response count until it reaches its window, a plain mean)
/// holds, after `k` responses of mean `m`, `a_k = a_0 q + m (1 - q)` with
/// `q` the product of the `1 - 1/n`: solved for `m`, the window's own
/// mean, not diluted by the responses before it (after 500 responses,
/// HAProxy's own average still gives the ones before the window more
/// than a third of its weight).
fn window_mean(before: &ServerCounters, after: &ServerCounters, requests: u64) -> Option<u64> {
    let end = after.mean_ms?;
    let (Some(start), Some(spans)) = (before.mean_ms, after.mean_spans) else {
        return Some(end);
    };
    if requests == 0 || spans == 0 {
        return Some(end);
    }
    let kept = kept_weight(before.responses, requests, spans);
    if kept >= 1.0 {
        return Some(end);
    }
    let mean = (end as f64 - start as f64 * kept) / (1.0 - kept);
    Some(mean.max(0.0).round() as u64)
}

/// The weight the average keeps of what it held before `k` more
/// responses, after `seen` of them: `n` is the count so far up to `spans`
/// (the product of `(n - 1) / n` from `seen + 1` telescopes to
/// `seen / (seen + k)`), then `spans`.
fn kept_weight(seen: u64, k: u64, spans: u64) -> f64 {
    let growing = k.min(spans.saturating_sub(seen));
    let before_full = if growing == 0 {
        1.0
    } else {
        seen as f64 / (seen + growing) as f64
    };
    before_full * (1.0 - 1.0 / spans as f64).powf((k - growing) as f64)
}

/// The traffic of `servers` between two readings of one balancer.
pub fn traffic_of<'a>(
    servers: impl IntoIterator<Item = &'a str>,
    before: &HashMap<String, ServerCounters>,
    after: &HashMap<String, ServerCounters>,
) -> Vec<Traffic> {
    servers
        .into_iter()
        .filter_map(|server| Some(Traffic::between(before.get(server)?, after.get(server)?)))
        .collect()
}

/// Balancers report mean response times in whole milliseconds, and the
/// window's mean is recovered from two of them: a host 2 ms slower than
/// its peers at 1 ms is not "twice as slow".
const LATENCY_RESOLUTION_MS: u64 = 5;

/// The verdict, and why in words.
pub fn judge(policy: &WatchPolicy, host: &Traffic, baseline: &Traffic) -> (WatchVerdict, String) {
    if host.requests < policy.min_requests.max(1) {
        return (
            WatchVerdict::NotJudged,
            format!(
                "not judged: {} requests (min_requests {})",
                host.requests, policy.min_requests
            ),
        );
    }
    let ratio = host.error_ratio();
    let baseline_ratio = baseline.error_ratio();
    let shares = format!(
        "5xx {} of {} requests, baseline {} of {}",
        percent(ratio),
        host.requests,
        percent(baseline_ratio),
        baseline.requests
    );
    if ratio > policy.max_error_ratio && ratio > policy.baseline_factor * baseline_ratio {
        return (
            WatchVerdict::Regressed,
            format!(
                "{shares}: above max_error_ratio {} and {}x the baseline",
                percent(policy.max_error_ratio),
                policy.baseline_factor
            ),
        );
    }
    if let (Some(factor), Some(mean), Some(base)) =
        (policy.max_latency_factor, host.mean_ms, baseline.mean_ms)
        && mean as f64 > factor * base as f64
        && mean >= base + LATENCY_RESOLUTION_MS
    {
        return (
            WatchVerdict::Regressed,
            format!("mean response {mean} ms against the baseline's {base} ms: above {factor}x"),
        );
    }
    (WatchVerdict::Passed, shares)
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(requests: u64, errors: u64, mean_ms: Option<u64>) -> Traffic {
        Traffic {
            requests,
            errors,
            mean_ms,
        }
    }

    #[test]
    fn a_host_failing_far_more_than_its_peers_regresses() {
        let policy = WatchPolicy::default();
        let (verdict, detail) = judge(&policy, &traffic(400, 120, None), &traffic(1200, 0, None));
        assert_eq!(verdict, WatchVerdict::Regressed, "{detail}");
        assert!(detail.contains("5xx 30.0% of 400 requests"), "{detail}");
    }

    #[test]
    fn errors_the_whole_fleet_shares_are_not_the_hosts_fault() {
        let policy = WatchPolicy::default();
        // 3% errors, but the untouched hosts fail 2% too: under 2x theirs.
        let (verdict, _) = judge(&policy, &traffic(1000, 30, None), &traffic(3000, 60, None));
        assert_eq!(verdict, WatchVerdict::Passed);
        // Under max_error_ratio, whatever the baseline.
        let (verdict, _) = judge(&policy, &traffic(1000, 5, None), &traffic(3000, 0, None));
        assert_eq!(verdict, WatchVerdict::Passed);
    }

    #[test]
    fn too_few_requests_give_no_verdict() {
        let policy = WatchPolicy::default();
        let (verdict, detail) = judge(&policy, &traffic(12, 12, None), &traffic(100, 0, None));
        assert_eq!(verdict, WatchVerdict::NotJudged);
        assert_eq!(detail, "not judged: 12 requests (min_requests 50)");
    }

    #[test]
    fn a_slow_host_regresses_only_with_a_latency_factor() {
        let slow = traffic(500, 0, Some(200));
        let peers = traffic(1500, 0, Some(90));
        let policy = WatchPolicy::default();
        assert_eq!(judge(&policy, &slow, &peers).0, WatchVerdict::Passed);
        let policy = WatchPolicy {
            max_latency_factor: Some(1.5),
            ..policy
        };
        let (verdict, detail) = judge(&policy, &slow, &peers);
        assert_eq!(verdict, WatchVerdict::Regressed);
        assert!(
            detail.contains("200 ms against the baseline's 90 ms"),
            "{detail}"
        );
    }

    #[test]
    fn traffic_is_the_difference_of_two_readings() {
        let before = ServerCounters {
            responses: 100,
            errors: 1,
            mean_ms: Some(10),
            mean_spans: None,
        };
        let after = ServerCounters {
            responses: 350,
            errors: 76,
            mean_ms: Some(12),
            mean_spans: None,
        };
        assert_eq!(
            Traffic::between(&before, &after),
            traffic(250, 75, Some(12))
        );
        // A balancer that restarted counts from zero.
        assert_eq!(Traffic::between(&after, &before), traffic(100, 1, Some(10)));
        let total = Traffic::total(&[traffic(100, 1, Some(10)), traffic(300, 0, Some(30))]);
        assert_eq!(total, traffic(400, 1, Some(25)));
    }

    /// HAProxy's `rtime` after 400 responses of 50 ms, from 25 ms: its own
    /// sliding average (over 512) says 39 ms; the window's mean is 50.
    #[test]
    fn the_windows_mean_is_recovered_from_a_sliding_average() {
        let mut average = 25.0_f64;
        for _ in 0..400 {
            average += (50.0 - average) / 512.0;
        }
        let reading = |responses, mean: f64| ServerCounters {
            responses,
            errors: 0,
            mean_ms: Some(mean.round() as u64),
            mean_spans: Some(512),
        };
        assert_eq!(average.round(), 39.0);
        let window = Traffic::between(&reading(1000, 25.0), &reading(1400, average));
        let mean = window.mean_ms.unwrap();
        assert!((49..=51).contains(&mean), "{mean}");
        // Under 512 responses in all, HAProxy's average is a plain mean:
        // 16 at 23 ms, then 108 at 45 ms, read as 42 ms.
        let early = Traffic::between(&reading(16, 23.0), &reading(124, 42.0));
        let mean = early.mean_ms.unwrap();
        assert!((44..=46).contains(&mean), "{mean}");
    }
}
