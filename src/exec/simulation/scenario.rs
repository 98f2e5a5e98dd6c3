//! A random fleet, playbook and list of faults, all from one seed.

use std::fmt::Write as _;

use super::world::HostFaults;

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same scenario on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// One injected fault. Run numbers count the runs of one chain: 0 is the
/// first `run`, each later one a `resume`. Operation numbers count calls
/// into the world from the start of that run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Host {
        host: String,
        kind: HostFault,
    },
    /// The balancer's API fails this many calls from this operation on.
    Outage {
        run: usize,
        at: u64,
        calls: u32,
    },
    /// The balancer forgets every drain.
    Reload {
        run: usize,
        at: u64,
    },
    /// SIGINT at this operation (a second one makes two).
    Signal {
        run: usize,
        at: u64,
    },
    /// An operator puts this host in maintenance at this operation.
    OperatorDisables {
        run: usize,
        at: u64,
        host: String,
    },
    /// The balancer's answer to the next drain or undrain from this
    /// operation on is lost, after it took effect.
    LostAnswer {
        run: usize,
        at: u64,
    },
    /// kill -9 at this operation.
    Kill {
        run: usize,
        at: u64,
    },
    /// This run starts with the window closed.
    OutsideWindow {
        run: usize,
    },
    /// This run's window closes a little after it starts.
    WindowCloses {
        run: usize,
    },
    /// The journal's disk fills after this many more lines of this run
    /// and `percent` of the next one; the next run finds room again.
    DiskFull {
        run: usize,
        lines: usize,
        percent: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFault {
    Unreachable,
    FailingStep,
    HangingStep,
    Unhealthy,
    OperatorDisabled,
    UnknownToBalancer,
    /// fleetroll's task for this host panics (a bug) when it first probes
    /// the host.
    TaskPanics,
    /// Its update passes the probes but fails half its real requests.
    BadRelease,
}

impl HostFault {
    pub fn apply(self, faults: &mut HostFaults) {
        match self {
            HostFault::Unreachable => faults.unreachable = true,
            HostFault::FailingStep => faults.failing_step = true,
            HostFault::HangingStep => faults.hanging_step = true,
            HostFault::Unhealthy => faults.unhealthy = true,
            HostFault::OperatorDisabled => faults.operator_disabled = true,
            HostFault::UnknownToBalancer => faults.unknown_to_balancer = true,
            HostFault::TaskPanics => faults.task_panics = true,
            HostFault::BadRelease => faults.bad_release = true,
        }
    }
}

/// The fleet and the playbook's strategy.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub zones: Vec<(String, usize)>,
    pub strategy: String,
    pub window: bool,
    pub rollback: bool,
    /// Once the run is over, `fleetroll rollback` of it (killed as the
    /// faults of runs from `UNDO_RUNS` on say).
    pub undo: bool,
    /// With `undo`: the first kill of the run is followed by the rollback,
    /// not by `resume`.
    pub undo_after_kill: bool,
    /// `[watch]`: returned hosts are judged by their traffic.
    pub watch: bool,
    /// The balancer behaves like an ELBv2 target group (`draining`, then
    /// `initial` before `healthy`).
    pub target_group: bool,
    pub faults: Vec<Fault>,
}

/// Most runs a chain may take before it must have finished.
pub const MAX_RUNS: usize = 6;

impl Scenario {
    pub fn generate(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let zone_count = rng.range(1, 4) as usize;
        let total = rng.range(1, 60) as usize;
        let mut zones: Vec<(String, usize)> = (0..zone_count)
            .map(|z| (format!("z{z}"), total / zone_count))
            .collect();
        zones[0].1 += total % zone_count;
        zones.retain(|(_, n)| *n > 0);
        let hosts: Vec<String> = zones
            .iter()
            .flat_map(|(zone, n)| (0..*n).map(move |i| format!("{zone}h{i}")))
            .collect();
        let max_unavailable = rng.range(1, (total as u64).clamp(1, 12));
        let first = rng.range(1, max_unavailable);
        let second = rng.range(first, max_unavailable);
        let mut strategy =
            format!("batch = [{first}, {second}]\nmax_unavailable = {max_unavailable}\n");
        if zones.len() > 1 {
            let mode = if rng.chance(50) {
                "one-at-a-time"
            } else {
                "spread"
            };
            let _ = writeln!(strategy, "zones = \"{mode}\"");
        }
        if rng.chance(30) {
            let _ = writeln!(strategy, "max_unavailable_per_zone = {}", rng.range(1, 3));
        }
        let _ = writeln!(strategy, "max_failed = {}", rng.range(0, 4));
        if rng.chance(30) {
            let _ = writeln!(strategy, "min_healthy = \"{}%\"", rng.range(10, 60));
        }
        if rng.chance(30) {
            let _ = writeln!(strategy, "pause = \"{}s\"", rng.range(1, 30));
        }
        let rollback = rng.chance(30);
        if rollback {
            strategy.push_str("on_failure = \"rollback\"\n");
        }
        let window = rng.chance(30);
        let undo = rng.chance(25);
        let undo_after_kill = undo && rng.chance(50);
        let mut faults = Vec::new();
        for host in &hosts {
            if rng.chance(8) {
                let kind = match rng.range(0, 6) {
                    0 => HostFault::Unreachable,
                    1 => HostFault::FailingStep,
                    2 => HostFault::HangingStep,
                    3 => HostFault::Unhealthy,
                    4 => HostFault::OperatorDisabled,
                    5 => HostFault::TaskPanics,
                    _ => HostFault::UnknownToBalancer,
                };
                faults.push(Fault::Host {
                    host: host.clone(),
                    kind,
                });
            }
        }
        let span = (total as u64) * 12 + 10;
        let runs = rng.range(1, 3) as usize;
        for run in 0..runs {
            if rng.chance(30) {
                faults.push(Fault::Outage {
                    run,
                    at: rng.range(1, span),
                    calls: rng.range(1, 12) as u32,
                });
            }
            if rng.chance(20) {
                faults.push(Fault::Reload {
                    run,
                    at: rng.range(1, span),
                });
            }
            if rng.chance(20) {
                let at = rng.range(1, span);
                faults.push(Fault::Signal { run, at });
                if rng.chance(50) {
                    faults.push(Fault::Signal {
                        run,
                        at: at + rng.range(1, 20),
                    });
                }
            }
            if rng.chance(15) {
                let host = hosts[rng.range(0, hosts.len() as u64 - 1) as usize].clone();
                faults.push(Fault::OperatorDisables {
                    run,
                    at: rng.range(1, span),
                    host,
                });
            }
            if window && run > 0 && rng.chance(30) {
                faults.push(Fault::OutsideWindow { run });
            }
            if window && rng.chance(20) {
                faults.push(Fault::WindowCloses { run });
            }
            if rng.chance(15) {
                faults.push(Fault::DiskFull {
                    run,
                    lines: rng.range(0, (total as u64) * 12) as usize,
                    percent: rng.range(0, 99) as u8,
                });
            }
            if run + 1 < runs || rng.chance(50) {
                faults.push(Fault::Kill {
                    run,
                    at: rng.range(1, span),
                });
            }
        }
        if undo {
            for run in 0..rng.range(0, 2) as usize {
                faults.push(Fault::Kill {
                    run: super::run::UNDO_RUNS + run,
                    at: rng.range(1, span),
                });
            }
        }
        // Drawn last, so that the scenarios of earlier seeds keep the rest
        // of their draws.
        let watch = rng.chance(40);
        for host in &hosts {
            if rng.chance(if watch { 12 } else { 4 }) {
                faults.push(Fault::Host {
                    host: host.clone(),
                    kind: HostFault::BadRelease,
                });
            }
        }
        let target_group = rng.chance(30);
        for run in 0..runs {
            if rng.chance(25) {
                faults.push(Fault::LostAnswer {
                    run,
                    at: rng.range(1, span),
                });
            }
        }
        Self {
            zones,
            strategy,
            window,
            rollback,
            undo,
            undo_after_kill,
            watch,
            target_group,
            faults,
        }
    }

    pub fn inventory(&self) -> String {
        // FLEETROLL_SIM_UNGUARDED=1: steps run bare, as before the step
        // lock, to see what the invariants catch without it.
        let guard = if std::env::var_os("FLEETROLL_SIM_UNGUARDED").is_some() {
            "step_lock = false\n"
        } else {
            ""
        };
        // `[watch]` needs a balancer that keeps counters: the simulation's
        // stands in for whichever kind is named.
        let balancer = if self.watch {
            "kind = \"haproxy\"\nsocket = \"/nonexistent/haproxy.sock\"\nbackend = \"app\"\n"
        } else {
            "kind = \"command\"\ndrain = \"true\"\nundrain = \"true\"\n"
        };
        let mut text = format!("[defaults]\nbalancer = \"lb\"\n{guard}[balancers.lb]\n{balancer}");
        for (zone, n) in &self.zones {
            let _ = writeln!(text, "[zones.{zone}]\nhosts = [");
            for i in 0..*n {
                let _ = writeln!(
                    text,
                    "  {{ name = \"{zone}h{i}\", address = \"127.0.0.1\" }},"
                );
            }
            text.push_str("]\n");
        }
        text
    }

    pub fn playbook(&self) -> String {
        let mut text = format!(
            "name = \"sim\"\n[strategy]\n{}\n[drain]\ntimeout = \"30s\"\nsettle = \"1s\"\n\
             [[steps]]\nname = \"deploy\"\nrun = \"deploy\"\ntimeout = \"60s\"\n\
             [health]\ninterval = \"1s\"\nhealthy_after = 2\ntimeout = \"20s\"\n\
             [[probes]]\ncommand = \"healthy\"\n",
            self.strategy
        );
        if self.rollback || self.undo {
            text.push_str("[[rollback]]\nrun = \"rollback\"\n");
        }
        if self.window {
            text.push_str("[window]\nstart = \"00:00\"\nend = \"23:00\"\ntimezone = \"UTC\"\n");
        }
        if self.watch {
            text.push_str("[watch]\nfor = \"20s\"\nmin_requests = 20\n");
        }
        text
    }
}
