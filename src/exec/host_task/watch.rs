//! `[watch]`: a returned host's real traffic, read from its balancers'
//! per-server counters at the start and the end of the watch, judged
//! against the baseline hosts' over the same interval (`exec::watch`).

use std::collections::HashMap;
use std::sync::Arc;

use super::{HostTask, Stop};
use crate::events::{Event, WatchVerdict};
use crate::exec::host_machine::Observation;
use crate::exec::retry;
use crate::exec::watch::{Traffic, judge, traffic_of};
use crate::transport::balancer::{LoadBalancer, ServerCounters};

type Reading = Vec<(Arc<dyn LoadBalancer>, HashMap<String, ServerCounters>)>;

impl HostTask {
    /// Watches the host for `[watch] for`, records its `host_watch`, and
    /// says whether it regressed. A watch that cannot read its counters
    /// judges nothing: the host stays in service, and the event says why.
    pub(super) async fn watch(&self) -> Result<Observation, Stop> {
        let Some(policy) = self.env.playbook.watch else {
            return Ok(Observation::Done);
        };
        let started = tokio::time::Instant::now();
        let before = self.read_counters().await;
        self.pause(policy.duration).await?;
        let after = self.read_counters().await;
        let seconds = started.elapsed().as_secs();
        let (before, after) = match (before, after) {
            (Ok(before), Ok(after)) => (before, after),
            (Err(error), _) | (_, Err(error)) => {
                let note = format!("not judged: {error}");
                self.record_watch(
                    WatchVerdict::NotJudged,
                    note.clone(),
                    seconds,
                    Traffic::default(),
                    (0, Traffic::default()),
                )
                .await?;
                return Ok(Observation::NotJudged(note));
            }
        };
        let server = self.host.lb_server.as_str();
        let mut host = Vec::new();
        let mut baseline = Vec::new();
        for ((_, first), (_, last)) in before.iter().zip(&after) {
            host.extend(traffic_of([server], first, last));
            baseline.extend(traffic_of(
                self.baseline.iter().map(String::as_str),
                first,
                last,
            ));
        }
        let host = Traffic::total(&host);
        let baseline_hosts = self.baseline.len();
        let baseline = Traffic::total(&baseline);
        let (verdict, detail) = judge(&policy, &host, &baseline);
        self.record_watch(
            verdict,
            detail.clone(),
            seconds,
            host,
            (baseline_hosts, baseline),
        )
        .await?;
        Ok(match verdict {
            WatchVerdict::Regressed => Observation::Regressed(detail),
            WatchVerdict::NotJudged => Observation::NotJudged(detail),
            WatchVerdict::Passed => Observation::Done,
        })
    }

    /// One reading of every balancer of the host that keeps counters.
    async fn read_counters(&self) -> Result<Reading, String> {
        let mut reading = Vec::new();
        for balancer in self.balancers() {
            match retry::balancer(|| balancer.counters()).await {
                Ok(Some(counters)) => reading.push((balancer, counters)),
                Ok(None) => {}
                Err(error) => {
                    return Err(format!(
                        "cannot read the counters of balancer {}: {error}",
                        balancer.name()
                    ));
                }
            }
        }
        if reading.is_empty() {
            return Err("none of its balancers keeps per-server counters".to_owned());
        }
        Ok(reading)
    }

    async fn record_watch(
        &self,
        verdict: WatchVerdict,
        detail: String,
        seconds: u64,
        host: Traffic,
        (baseline_hosts, baseline): (usize, Traffic),
    ) -> Result<(), Stop> {
        self.reporter
            .record(Event::HostWatch {
                host: self.name(),
                verdict,
                detail,
                seconds,
                requests: host.requests,
                errors: host.errors,
                mean_ms: host.mean_ms,
                baseline_hosts,
                baseline_requests: baseline.requests,
                baseline_errors: baseline.errors,
                baseline_mean_ms: baseline.mean_ms,
            })
            .await?;
        Ok(())
    }
}
