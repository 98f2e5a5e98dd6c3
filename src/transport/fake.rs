//! In-memory hosts and balancer behind the transport traits, for unit tests
//! of the dispatcher and for the rollout benchmark.
//!
//! A fake host understands two commands: `deploy …` (takes the step time,
//! then the host warms up) and `healthy` (exit 0 once warm). The balancer
//! drains at once and records how many hosts were out at the same time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::balancer::{AdminState, BalancerError, LoadBalancer, PoolStatus, ServerStatus, Target};
use super::shell::{Connector, ExecOutput, ExitStatus, RemoteShell, ShellError};
use super::step_guard;
use crate::model::inventory::Host;

/// How one fake host behaves.
#[derive(Debug, Clone, Default)]
pub struct FakeBehaviour {
    pub step_time: Duration,
    pub warmup: Duration,
    /// `deploy` exits 1.
    pub fail_step: bool,
    /// Connecting fails as unreachable.
    pub unreachable: bool,
}

#[derive(Debug, Default)]
struct State {
    behaviour: HashMap<String, FakeBehaviour>,
    ready_at: HashMap<String, Instant>,
    drained: HashSet<String>,
    /// Every host drained at any time, as the balancer saw it.
    ever_drained: HashSet<String>,
    max_drained: usize,
    deploys: HashMap<String, usize>,
}

/// The fleet's shared state; hand clones of it to the connector and balancer.
#[derive(Debug, Clone, Default)]
pub struct FakeFleet {
    state: Arc<Mutex<State>>,
    default: FakeBehaviour,
}

impl FakeFleet {
    pub fn new(default: FakeBehaviour) -> Self {
        Self {
            state: Arc::default(),
            default,
        }
    }

    pub fn set(&self, host: &str, behaviour: FakeBehaviour) {
        self.lock().behaviour.insert(host.to_owned(), behaviour);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn behaviour(&self, host: &str) -> FakeBehaviour {
        self.lock()
            .behaviour
            .get(host)
            .cloned()
            .unwrap_or_else(|| self.default.clone())
    }

    /// The most hosts that were drained at the same time.
    pub fn max_drained(&self) -> usize {
        self.lock().max_drained
    }

    pub fn drained(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.lock().drained.iter().cloned().collect();
        hosts.sort();
        hosts
    }

    /// Every host the balancer drained at any time, sorted.
    pub fn ever_drained(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.lock().ever_drained.iter().cloned().collect();
        hosts.sort();
        hosts
    }

    pub fn deploys(&self, host: &str) -> usize {
        self.lock().deploys.get(host).copied().unwrap_or(0)
    }

    pub fn connector(&self) -> Arc<dyn Connector> {
        Arc::new(FakeConnector {
            fleet: self.clone(),
        })
    }

    pub fn balancer(&self, name: &str) -> Arc<dyn LoadBalancer> {
        Arc::new(FakeBalancer {
            fleet: self.clone(),
            name: name.to_owned(),
        })
    }
}

#[derive(Debug)]
struct FakeConnector {
    fleet: FakeFleet,
}

#[async_trait]
impl Connector for FakeConnector {
    async fn connect(&self, host: &Host) -> Result<Arc<dyn RemoteShell>, ShellError> {
        if self.fleet.behaviour(&host.name).unreachable {
            return Err(ShellError::Unreachable {
                host: host.name.clone(),
                reason: "fake: unreachable".to_owned(),
            });
        }
        Ok(Arc::new(FakeShell {
            fleet: self.fleet.clone(),
            host: host.name.clone(),
        }))
    }
}

#[derive(Debug)]
struct FakeShell {
    fleet: FakeFleet,
    host: String,
}

#[async_trait]
impl RemoteShell for FakeShell {
    async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, ShellError> {
        let started = Instant::now();
        let behaviour = self.fleet.behaviour(&self.host);
        // A fake host runs one step at a time anyway: the guard's queries
        // find nothing, and a guarded step is its step, stopped on the
        // host (exit 124) when its own limit is up.
        if step_guard::parse_query(command).is_some() {
            return Ok(ExecOutput {
                status: ExitStatus::Code(0),
                stdout_tail: String::new(),
                stderr_tail: String::new(),
                duration: Duration::ZERO,
            });
        }
        let guarded = step_guard::parse(command);
        let command = guarded.as_ref().map_or(command, |g| g.step.as_str());
        let code = if command.starts_with("deploy") {
            *self
                .fleet
                .lock()
                .deploys
                .entry(self.host.clone())
                .or_default() += 1;
            if let Some(guarded) = &guarded
                && behaviour.step_time > guarded.limit
            {
                tokio::time::sleep(guarded.limit).await;
                124
            } else if behaviour.step_time > timeout {
                tokio::time::sleep(timeout).await;
                return Err(ShellError::Timeout {
                    host: self.host.clone(),
                    after: timeout,
                });
            } else {
                tokio::time::sleep(behaviour.step_time).await;
                let ready = Instant::now() + behaviour.warmup;
                self.fleet.lock().ready_at.insert(self.host.clone(), ready);
                u32::from(behaviour.fail_step)
            }
        } else if command == "healthy" {
            let ready = self
                .fleet
                .lock()
                .ready_at
                .get(&self.host)
                .is_none_or(|at| Instant::now() >= *at);
            u32::from(!ready)
        } else {
            127
        };
        Ok(ExecOutput {
            status: ExitStatus::Code(code),
            stdout_tail: String::new(),
            stderr_tail: if code == 0 {
                String::new()
            } else {
                format!("fake: {command} failed")
            },
            duration: started.elapsed(),
        })
    }

    async fn close(&self) {}
}

#[derive(Debug)]
struct FakeBalancer {
    fleet: FakeFleet,
    name: String,
}

#[async_trait]
impl LoadBalancer for FakeBalancer {
    fn name(&self) -> &str {
        &self.name
    }

    async fn status(&self, target: Target<'_>) -> Result<ServerStatus, BalancerError> {
        let drained = self.fleet.lock().drained.contains(&target.host.name);
        Ok(ServerStatus {
            admin: if drained {
                AdminState::Drain
            } else {
                AdminState::Ready
            },
            up: Some(true),
            sessions: Some(0),
        })
    }

    async fn drain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        let mut state = self.fleet.lock();
        state.drained.insert(target.host.name.clone());
        state.ever_drained.insert(target.host.name.clone());
        state.max_drained = state.max_drained.max(state.drained.len());
        Ok(())
    }

    async fn undrain(&self, target: Target<'_>) -> Result<(), BalancerError> {
        self.fleet.lock().drained.remove(&target.host.name);
        Ok(())
    }

    async fn pool(&self) -> Result<Option<PoolStatus>, BalancerError> {
        Ok(None)
    }
}
