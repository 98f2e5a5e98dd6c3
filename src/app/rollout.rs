//! `run` and `resume`: build the transports, take the lock, recover, roll.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{AppError, Exit, RunOptions};
use crate::config::diagnostics::Diagnostic;
use crate::config::load::Config;
use crate::events::{Event, Outcome, RunOutcome, RunSettings};
use crate::exec::dispatcher::{
    Adopted, Dispatcher, EventSink, Finish, Limits, RunBatch, WindowGuard, Work,
};
use crate::exec::env::{Cadence, RunEnv, Transports};
use crate::exec::host_machine::Route;
use crate::journal::replay::{RunRecord, replay};
use crate::journal::store::{JournalError, TornLine, new_run_id};
use crate::lock::{LockError, LockGuard, LockInfo, RunLock, lock_path, staleness, this_host};
use crate::model::inventory::{BalancerKind, Host, Inventory};
use crate::model::playbook::StepAction;
use crate::plan::batches::Plan;
use crate::plan::estimate::Estimate;
use crate::report::human::HumanSink;
use crate::report::json::JsonSink;
use crate::report::notify::{Notifier, message_for_end, message_for_start};
use crate::report::summary::Summary;
use crate::state::Store;
use crate::state::bucket::Bucket;
use crate::transport::balancer::{LoadBalancer, Target};
use crate::transport::command_balancer::CommandBalancer;
use crate::transport::haproxy::Haproxy;
use crate::transport::probe::Prober;
use crate::transport::shell::Connector;

/// Before replacing instances: each group must be able to take it. No
/// instance refresh may be in progress (AWS would fight us), and a surge
/// needs room under the group's max size. Returns what users should know,
/// such as the launch template version new instances will get. `previous`:
/// the record of the run being resumed, whose surges under way are counted
/// in the group's desired capacity already.
pub async fn check_groups(
    config: &Config,
    plan: &Plan,
    previous: Option<&crate::journal::replay::RunRecord>,
) -> Result<Vec<String>, AppError> {
    use crate::transport::aws::autoscaling::AutoScaling;
    let replace = config.playbook.steps.iter().find_map(|s| match s.action {
        StepAction::ReplaceAsg { surge } => Some(surge),
        _ => None,
    });
    let standby = config.playbook.asg_standby;
    if replace.is_none() && !standby {
        return Ok(Vec::new());
    }
    let surge = replace == Some(true);
    let inventory: Vec<&Host> = config.inventory.hosts().collect();
    let batches: Vec<Vec<&Host>> = plan
        .batches
        .iter()
        .map(|b| b.hosts.iter().map(|id| inventory[id.0 as usize]).collect())
        .collect();
    let hosts: Vec<&Host> = batches.iter().flatten().copied().collect();
    // The most hosts of `group` one batch takes out at once: what a surge
    // adds to the group, and what Standby takes from its desired capacity.
    // When resuming, a host whose replacement ended or whose surge is
    // known to be made adds nothing more.
    let most_in_a_batch = |group: &str, info: &crate::transport::aws::GroupInfo| {
        let adds = |host: &&&Host| {
            let Some(record) = previous.and_then(|p| p.hosts.get(&host.name)) else {
                return true;
            };
            if record.replaced_by.is_some() {
                return false;
            }
            match &record.replacing {
                Some(begun) if begun.surge_desired.is_some() => {
                    let old_in_service = info.instances.iter().any(|i| {
                        i.instance_id == begun.old_instance && i.lifecycle_state == "InService"
                    });
                    !begun.surge_settled && old_in_service
                }
                _ => true,
            }
        };
        batches
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .filter(|h| {
                        h.aws
                            .as_ref()
                            .and_then(|a| a.asg.as_deref())
                            .is_some_and(|g| g == group)
                    })
                    .filter(adds)
                    .count()
            })
            .max()
            .unwrap_or(0) as u32
    };
    let mut seen: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    let refuse = |message: String| AppError::Invalid(Diagnostic::plain(message).into());
    for host in &hosts {
        if replace.is_none() && host.aws.as_ref().is_none_or(|a| a.asg.is_none()) {
            // Standby only: a host outside any group has none to leave.
            continue;
        }
        let Some(origin) = &host.aws else {
            return Err(refuse(format!(
                "{} is a static host; replace = \"aws-asg\" needs Auto Scaling members",
                host.name
            )));
        };
        let Some(group) = &origin.asg else {
            return Err(refuse(format!(
                "{} is in no Auto Scaling group; it cannot be replaced",
                host.name
            )));
        };
        if seen.contains(group) {
            continue;
        }
        seen.push(group.clone());
        let asg = AutoScaling::connect(
            origin.source.region.as_deref(),
            origin.source.endpoint_url.as_deref(),
        )
        .await;
        let info = asg
            .describe_group(group)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        let refresh = asg
            .refresh_in_progress(group)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        let out_at_once = most_in_a_batch(group, &info);
        if standby && info.desired.saturating_sub(out_at_once) < info.min {
            return Err(refuse(format!(
                "Auto Scaling group {group}: asg_standby puts up to {out_at_once} of its instances in Standby \
                 at once, which lowers its desired capacity from {} to {}, below its min size ({}); AWS refuses \
                 that after the host was drained. Lower the group's min size to {} for the run, take at most {} \
                 of its hosts per batch, or set asg_standby = false",
                info.desired,
                info.desired.saturating_sub(out_at_once),
                info.min,
                info.desired.saturating_sub(out_at_once),
                info.desired.saturating_sub(info.min),
            )));
        }
        if replace.is_none() {
            continue;
        }
        if refresh.in_progress {
            return Err(refuse(format!(
                "Auto Scaling group {group} has an instance refresh in progress; wait for it or cancel it"
            )));
        }
        if let Some(warning) = refresh.warning {
            notes.push(warning);
        }
        if surge
            && let Some(protected) = info.instances.iter().find(|i| {
                i.protected_from_scale_in
                    && hosts
                        .iter()
                        .any(|h| h.target_id.as_deref() == Some(i.instance_id.as_str()))
            })
        {
            return Err(refuse(format!(
                "instance {} of {group} is protected from scale-in: surge = true ends with a scale-in, which \
                 would remove another instance instead; lift the protection or use surge = false",
                protected.instance_id
            )));
        }
        if surge && info.desired + out_at_once > info.max {
            return Err(refuse(format!(
                "Auto Scaling group {group}: a batch surges up to {out_at_once} of its instances at once, from \
                 desired capacity {} to {}, above its max size ({}); AWS refuses that after the hosts were \
                 drained. Raise the group's max size to {} for the run, take at most {} of its hosts per \
                 batch, or use surge = false",
                info.desired,
                info.desired + out_at_once,
                info.max,
                info.desired + out_at_once,
                info.max.saturating_sub(info.desired),
            )));
        }
        notes.push(format!(
            "group {group}: desired {}, launch template version {}",
            info.desired,
            info.launch_template_version.as_deref().unwrap_or("(none)")
        ));
    }
    Ok(notes)
}

pub async fn balancers(inventory: &Inventory) -> HashMap<String, Arc<dyn LoadBalancer>> {
    let mut map: HashMap<String, Arc<dyn LoadBalancer>> = HashMap::new();
    for balancer in &inventory.balancers {
        let client: Arc<dyn LoadBalancer> = match &balancer.kind {
            BalancerKind::Haproxy { endpoint, backend } => {
                Arc::new(Haproxy::new(&balancer.name, endpoint.clone(), backend))
            }
            BalancerKind::Command {
                drain,
                undrain,
                status,
                ssh,
            } => Arc::new(CommandBalancer::new(
                &balancer.name,
                drain.clone(),
                undrain.clone(),
                status.clone(),
                *ssh,
            )),
            kind @ BalancerKind::AwsTargetGroup { .. } => {
                match crate::transport::aws::elbv2::TargetGroupBalancer::from_kind(
                    &balancer.name,
                    kind,
                )
                .await
                {
                    Some(client) => Arc::new(client),
                    None => continue,
                }
            }
        };
        map.insert(balancer.name.clone(), client);
    }
    map
}

/// An unreachable balancer, or a host its balancer does not know, is bad
/// input: refuse before any host is touched.
pub async fn check_balancers(
    hosts: &[&Host],
    balancers: &HashMap<String, Arc<dyn LoadBalancer>>,
) -> Result<(), AppError> {
    let mut problems = Vec::new();
    for host in hosts {
        for name in &host.balancers {
            let Some(balancer) = balancers.get(name) else {
                continue;
            };
            // Checked on the host once the run has connected, before the
            // host is drained.
            if balancer.needs_host_session() {
                continue;
            }
            if let Err(error) = balancer.status(Target { host, shell: None }).await {
                problems.push(error.to_string());
                if error.retryable() {
                    break;
                }
            }
        }
        if problems.len() >= 10 {
            break;
        }
    }
    problems.dedup();
    if problems.is_empty() {
        return Ok(());
    }
    let mut diagnostics = crate::config::diagnostics::Diagnostics::default();
    for problem in problems {
        diagnostics.push(
            Diagnostic::plain(problem)
                .with_help("check the balancer's address and the hosts' server names (lb_server)"),
        );
    }
    Err(AppError::Invalid(diagnostics))
}

pub fn settings(options: &RunOptions) -> RunSettings {
    RunSettings {
        inventory: absolute(&options.inventory).display().to_string(),
        playbook: absolute(&options.playbook).display().to_string(),
        var_names: options.vars.iter().map(|(k, _)| k.clone()).collect(),
        limit: options.limit.clone(),
        accept_new_host_keys: options.accept_new_host_keys,
    }
}

/// The canonical path, as runs record their files (so that every working
/// directory names an inventory the same way).
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Takes the inventory's lock for `run_id`; `now` is this machine's
/// clock (the run's [`crate::clock::Clock`]).
pub fn acquire_lock(
    store: &Store,
    inventory: &Path,
    run_id: &str,
    now: jiff::Timestamp,
) -> Result<RunLock, AppError> {
    acquire(store, inventory, run_id, false, now)
}

/// For `resume`: a lock left by this same run whose holder is certainly
/// dead is taken over and the journal says so. In a directory that is a
/// pid gone on this machine (a holder presumed dead only from an old
/// heartbeat may be alive on another machine, so that still needs
/// `unlock --force`); in a bucket, a lock that did not change for a whole
/// lease while this machine watched it.
pub fn take_over_lock(
    store: &Store,
    inventory: &Path,
    run_id: &str,
    now: jiff::Timestamp,
) -> Result<RunLock, AppError> {
    acquire(store, inventory, run_id, true, now)
}

fn lock_info(store: &Store, inventory: &Path, run_id: &str, now: jiff::Timestamp) -> LockInfo {
    LockInfo {
        host: this_host(),
        pid: std::process::id(),
        run_id: run_id.to_owned(),
        inventory: absolute(inventory).display().to_string(),
        since: now.to_string(),
        heartbeat: now.to_string(),
        lease_s: match store {
            Store::Dir(_) => None,
            Store::Bucket { lease, .. } => Some(lease.as_secs()),
        },
    }
}

fn acquire(
    store: &Store,
    inventory: &Path,
    run_id: &str,
    take_over: bool,
    now: jiff::Timestamp,
) -> Result<RunLock, AppError> {
    let info = lock_info(store, inventory, run_id, now);
    match store {
        Store::Dir(state_dir) => acquire_file(store, state_dir, inventory, info, take_over, now),
        Store::Bucket { bucket, .. } => acquire_lease(store, bucket, info, take_over, now),
    }
}

/// The check, the journal record, the removal and the new lock happen
/// under one guard: no other fleetroll can take or break the lock in
/// between, so only the lock actually broken is recorded as broken, and
/// only one of several resumes racing for it wins.
fn acquire_file(
    store: &Store,
    state_dir: &Path,
    inventory: &Path,
    info: LockInfo,
    take_over: bool,
    now: jiff::Timestamp,
) -> Result<RunLock, AppError> {
    let path = lock_path(state_dir, inventory);
    let guard = LockGuard::take(&path)?;
    if take_over
        && let Ok(holder) = crate::lock::read(&path)
        && holder.run_id == info.run_id
        && holder.host == this_host()
        && !crate::lock::pid_alive(holder.pid)
    {
        record_lock_broken(store, &holder, now).map_err(AppError::Journal)?;
        guard.remove(&path)?;
    }
    Ok(RunLock::File(guard.create(&path, info, now)?))
}

/// Conditional writes stand in for the guard: the lock is created where
/// there is none, or claimed from what was read (released, or this run's
/// own dead holder) only if it is still that; a race lost means reading
/// again and judging anew.
///
/// Whether this run's own holder is dead is judged by watching the lock for
/// a whole lease by this machine's monotonic clock: the holder's heartbeat
/// timestamps come from another machine's clock, which may be off by more
/// than the lease.
fn acquire_lease(
    store: &Store,
    bucket: &Arc<Bucket>,
    info: LockInfo,
    take_over: bool,
    now: jiff::Timestamp,
) -> Result<RunLock, AppError> {
    use crate::state::lease::{self, LockObject, Watched};
    for _ in 0..5 {
        let mut read = lease::read(bucket)?;
        if let Some(lease::Read {
            object: LockObject::Held(holder),
            ..
        }) = &read
        {
            let held = |holder: &LockInfo, stale| {
                AppError::Lock(LockError::Held {
                    inventory: info.inventory.clone(),
                    holder: Box::new(holder.clone()),
                    stale,
                })
            };
            if !(take_over && holder.run_id == info.run_id) {
                return Err(held(holder, staleness(holder, now, None)));
            }
            let holder = holder.clone();
            tracing::info!(
                "run {} holds the lock {} (pid {} on {}, last heartbeat {} by its clock); watching it for up to {}s to tell whether that process is still alive",
                holder.run_id,
                bucket.url_of(lease::LOCK_KEY),
                holder.pid,
                holder.host,
                holder.heartbeat,
                holder.lease().as_secs()
            );
            let seen = read.take().expect("read above");
            match lease::watch_for_silence(bucket, seen, holder.lease())? {
                Watched::Renewed(alive) => {
                    tracing::info!(
                        "its heartbeat moved: run {} is alive on {}",
                        alive.run_id,
                        alive.host
                    );
                    return Err(held(&alive, None));
                }
                Watched::Changed => continue,
                Watched::Silent(silent) => {
                    record_lock_broken(store, &holder, now).map_err(AppError::Journal)?;
                    read = Some(silent);
                }
            }
        }
        if let Some(lock) = lease::claim(bucket, info.clone(), read.as_ref())? {
            // Held: whose prefix this is can be settled without a race.
            if let Err(refusal) =
                crate::state::owner::claim_or_check(bucket, &info.inventory, &info.run_id)
            {
                lock.release();
                return Err(AppError::Invalid(Diagnostic::plain(refusal).into()));
            }
            return Ok(RunLock::Lease(lock));
        }
    }
    Err(AppError::Lock(LockError::Store {
        location: bucket.url_of(lease::LOCK_KEY),
        reason: "it kept changing while this run tried to take it".to_owned(),
    }))
}

/// Appends `lock_broken` to the journal of the run that held the lock. In
/// a bucket this takes the run's next segment, which fences the holder: its
/// own next write finds the segment taken.
pub(crate) fn record_lock_broken(
    store: &Store,
    holder: &LockInfo,
    now: jiff::Timestamp,
) -> Result<(), JournalError> {
    let mut journal = store.open_journal(&holder.run_id)?;
    let envelope = crate::events::Envelope {
        ts: now.to_string(),
        run_id: holder.run_id.clone(),
        event: Event::LockBroken {
            holder_pid: holder.pid,
            holder_host: holder.host.clone(),
        },
    };
    journal.append(&envelope)?;
    journal.sync()
}

/// What `unlock --force` did to one lock.
#[derive(Debug, PartialEq, Eq)]
pub enum BreakOutcome {
    Broken,
    /// Removed meanwhile (its holder finished, or someone broke it).
    Gone,
    /// No longer the lock that was judged dead: it is left alone.
    Changed(String),
}

/// Breaks the lock at `path` if it is still the one judged dead (`judged`:
/// its holder, `None` for an unreadable file), recording it in the holder's
/// journal first; all under the guard, so a lock that a live run took or
/// refreshed since the judgement is never removed.
pub fn break_lock(
    store: &Store,
    path: &Path,
    judged: Option<&LockInfo>,
    now: jiff::Timestamp,
) -> Result<BreakOutcome, AppError> {
    let guard = LockGuard::take(path)?;
    let current = match crate::lock::read(path) {
        Ok(holder) => Some(holder),
        Err(_) if !path.exists() => return Ok(BreakOutcome::Gone),
        Err(_) => None,
    };
    if current.as_ref() != judged {
        let now_held = current.map_or_else(
            || "it is unreadable now".to_owned(),
            |h| {
                format!(
                    "now run {} (pid {} on {}, last heartbeat {})",
                    h.run_id, h.pid, h.host, h.heartbeat
                )
            },
        );
        return Ok(BreakOutcome::Changed(now_held));
    }
    if let Some(holder) = &current {
        record_lock_broken(store, holder, now).map_err(AppError::Journal)?;
    }
    guard.remove(path)?;
    Ok(BreakOutcome::Broken)
}

/// Everything a rollout needs, built once.
pub struct Rollout<'a> {
    pub config: &'a Config,
    pub options: &'a RunOptions,
    pub connector: Arc<dyn Connector>,
}

impl std::fmt::Debug for Rollout<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollout").finish_non_exhaustive()
    }
}

impl Rollout<'_> {
    /// When the playbook's maintenance window closes, if it is open now.
    fn window_closes_at(&self) -> Option<jiff::Timestamp> {
        let window = self.config.playbook.window.as_ref()?;
        match crate::plan::window::window_state(window, self.options.clock.now()) {
            Ok(crate::plan::window::WindowState::Open { closes_at }) => Some(closes_at),
            _ => None,
        }
    }

    fn sinks(&self) -> Vec<Box<dyn EventSink>> {
        let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
        sinks.push(Box::new(if self.options.quiet {
            HumanSink::log_only(self.options.verbose)
        } else {
            HumanSink::new(self.options.terminal, self.options.verbose)
        }));
        if self.options.json {
            sinks.push(Box::new(JsonSink));
        }
        sinks
    }

    /// The promise that no host stays out by accident: every host that an
    /// earlier run of this inventory left drained (interrupted, or failed
    /// and kept out on purpose) is taken over by this run, whose journal
    /// records the drain as its own before the earlier one records the
    /// hand-over. Selected hosts are then rolled like any other; the rest
    /// are returned to service if healthy.
    fn stranded(&self, this_run: &str, selected: &[&Host]) -> Result<Vec<Adopted>, AppError> {
        let store = &self.options.state;
        let inventory = absolute(&self.options.inventory).display().to_string();
        let mut adopted: Vec<Adopted> = Vec::new();
        let run_ids = store.run_ids().map_err(AppError::Journal)?;
        for run_id in run_ids.into_iter().filter(|id| id != this_run) {
            let record = load_record(store, &run_id)?;
            if record
                .settings
                .as_ref()
                .is_none_or(|s| !store.same_inventory(&s.inventory, &inventory))
            {
                continue;
            }
            for (name, host_record) in &record.hosts {
                if host_record.drained.is_empty() || adopted.iter().any(|a| &a.host.name == name) {
                    continue;
                }
                let Some(host) = self.config.inventory.hosts().find(|h| &h.name == name) else {
                    continue;
                };
                adopted.push(Adopted {
                    host: host.clone(),
                    drained: host_record.drained.clone(),
                    memory: host_record.drain_memory.clone(),
                    from: store.open_journal(&run_id).map_err(AppError::Journal)?,
                    selected: selected.iter().any(|h| h.name == *name),
                });
            }
        }
        Ok(adopted)
    }

    /// Starts a new run, continues one, or rolls one back: checks what can
    /// be checked without touching anything, then takes the lock (with
    /// `acquire`) and hands the run to the dispatcher, whose loop holds the
    /// lock's heartbeat until the end.
    pub async fn execute(
        &self,
        plan: &Plan,
        run_id: String,
        acquire: impl FnOnce() -> Result<RunLock, AppError>,
        kind: Kind,
    ) -> Result<Exit, AppError> {
        let (previous, rolling_back) = match kind {
            Kind::Start => (None, false),
            Kind::Resume(record) => (Some(record), false),
            Kind::Rollback(record) => (Some(record), true),
        };
        let store = &self.options.state;
        let hosts: Vec<&Host> = self.config.inventory.hosts().collect();
        let balancers = balancers(&self.config.inventory).await;
        let selected: Vec<&Host> = plan
            .batches
            .iter()
            .flat_map(|b| b.hosts.iter().map(|id| hosts[id.0 as usize]))
            .collect();
        check_balancers(&selected, &balancers).await?;
        // Seen before the lock's take-over opens the journal and drops it.
        let torn = if previous.is_some() {
            store.read_journal(&run_id).ok().and_then(|j| j.torn)
        } else {
            None
        };
        let group_notes = if rolling_back {
            Vec::new()
        } else {
            check_groups(self.config, plan, previous.as_ref()).await?
        };
        let lock = acquire()?;
        // Local state: the inventory's lock is named after its path and
        // state directory; the fleet's lock turns away copies of it.
        let _fleet_lock = match store {
            Store::Dir(state_dir) => {
                let holder = crate::fleet_lock::FleetHolder {
                    info: lock_info(
                        store,
                        &self.options.inventory,
                        &run_id,
                        self.options.clock.now(),
                    ),
                    state: absolute(state_dir).display().to_string(),
                };
                match crate::fleet_lock::FleetLock::take(
                    &crate::fleet_lock::fleet_key(hosts.iter().copied()),
                    &holder,
                ) {
                    Ok(fleet_lock) => fleet_lock,
                    Err(error) => {
                        lock.release();
                        return Err(error.into());
                    }
                }
            }
            Store::Bucket { .. } => None,
        };
        let env = Arc::new(RunEnv {
            transports: Transports {
                connector: Arc::clone(&self.connector),
                balancers,
                prober: Prober::new(),
            },
            playbook: Arc::new(self.config.playbook.clone()),
            cadence: Cadence::default(),
            needs_ssh: RunEnv::needs_ssh(&self.config.playbook, &self.config.inventory),
            replacements: Arc::new(
                previous
                    .as_ref()
                    .map(crate::exec::replacements::Replacements::from_record)
                    .unwrap_or_default(),
            ),
        });
        let resuming = previous.is_some();
        let adopted = match self.stranded(&run_id, &selected) {
            Ok(adopted) => adopted,
            Err(error) => {
                lock.release();
                return Err(error);
            }
        };
        let journal = match store.open_journal(&run_id) {
            Ok(journal) => journal,
            Err(error) => {
                lock.release();
                return Err(AppError::Journal(error));
            }
        };
        let window = self
            .config
            .playbook
            .window
            .as_ref()
            .filter(|_| !rolling_back)
            .map(|window| WindowGuard {
                window: window.clone(),
                clock: self.options.clock,
                first_batch_estimate: Estimate::of(plan, &self.config.playbook).per_batch(),
            });
        let mut dispatcher = Dispatcher::new(
            env,
            journal,
            previous.unwrap_or_else(|| RunRecord::new(&run_id)),
            lock,
            self.options.clock,
            Limits::of(plan, self.config.playbook.strategy.pause),
            crate::exec::signals::listen(),
        )
        .with_sinks(self.sinks())
        .with_window(window);
        let batches = RunBatch::from_plan(plan, &hosts);
        let event = if rolling_back {
            // Recorded before any host is touched: from here on the run
            // only undoes, and `resume` refuses it.
            Event::RunResumed {
                pending: plan.batches.iter().map(|b| b.hosts.len()).sum(),
                rollback: true,
            }
        } else if resuming {
            let pending = dispatcher
                .record()
                .hosts
                .values()
                .filter(|h| !h.is_settled())
                .count();
            Event::RunResumed {
                pending,
                rollback: false,
            }
        } else {
            Event::RunStarted {
                playbook: self.config.playbook.name.clone(),
                hosts: plan.selected,
                batches: plan.batches.len(),
                failure_budget: plan.failure_budget,
                settings: settings(self.options),
                plan: RunBatch::planned(&batches),
                fingerprint: Some(crate::journal::fingerprint::fingerprint(
                    &self.config.playbook,
                )),
                max_unavailable: Some(plan.max_unavailable),
                window_closes_at: self.window_closes_at().map(|at| at.to_string()),
            }
        };
        let torn_note = torn.map(|TornLine { line, bytes }| Event::Warning {
            host: None,
            message: format!(
                "line {line} of the journal ({bytes} bytes) was cut short by the interruption and is dropped; \
                 it was never synced, so nothing acted on it"
            ),
        });
        let started = std::iter::once(event)
            .chain(torn_note)
            .chain(
                self.config
                    .host_warnings
                    .iter()
                    .cloned()
                    .chain(group_notes)
                    .map(|message| Event::Warning {
                        host: None,
                        message,
                    }),
            )
            .try_for_each(|event| dispatcher.emit(event));
        if let Err(error) = started {
            dispatcher.release();
            return Err(AppError::Journal(error));
        }
        let notifier = Notifier::new(self.config.playbook.webhooks.clone()).ok();
        if let Some(notifier) = &notifier
            && !resuming
        {
            let message = message_for_start(
                &run_id,
                &self.config.playbook.name,
                plan.selected,
                plan.batches.len(),
            );
            for warning in notifier.send(&message).await {
                let _ = dispatcher.emit(Event::Warning {
                    host: None,
                    message: warning,
                });
            }
        }
        // Rolled back: the hosts it drained and never changed go back too.
        let others: Vec<Host> = hosts
            .iter()
            .filter(|h| {
                rolling_back
                    && dispatcher
                        .record()
                        .hosts
                        .get(&h.name)
                        .is_some_and(|r| r.out_unchanged())
            })
            .map(|h| (*h).clone())
            .collect();
        let work = Work {
            route: if rolling_back {
                Route::RollBack
            } else {
                Route::Roll
            },
            batches,
            adopted,
            others,
            resuming: resuming && !rolling_back,
        };
        let finished = dispatcher.run(work).await;
        // Every host task has ended: the connections they shared go too.
        self.connector.close().await;
        let finish = match finished {
            Ok(finish) => finish,
            Err(error) => {
                let released = dispatcher.release();
                return Err(AppError::Run(error.with_lock_released(released)));
            }
        };
        let summary = Summary::of(dispatcher.record());
        if let Some(notifier) = &notifier {
            for warning in notifier
                .send(&message_for_end(&summary, &self.config.playbook.name))
                .await
            {
                tracing::warn!("{warning}");
            }
        }
        if let Some(path) = &self.options.metrics_file {
            let previous = std::fs::read_to_string(path).ok();
            let text = crate::report::metrics::render(
                &summary,
                &self.config.playbook.name,
                self.options.clock.now(),
                dispatcher.elapsed(),
                previous.as_deref(),
            );
            if let Err(error) = crate::report::metrics::write_atomically(path, &text) {
                tracing::warn!("cannot write the metrics file {}: {error}", path.display());
            }
        }
        let rendered = summary.render();
        tracing::info!(target: crate::logging::EVENTS, "{}", rendered.trim_end());
        if !self.options.quiet {
            eprint!("{rendered}");
        }
        if self.options.json
            && let Ok(line) = serde_json::to_string(&serde_json::json!({
                "ts": jiff::Timestamp::now().to_string(),
                "run_id": run_id,
                "event": "summary",
                "summary": summary,
            }))
        {
            println!("{line}");
        }
        let exit = exit_for(&finish, dispatcher.record(), rolling_back);
        dispatcher.release();
        Ok(exit)
    }
}

/// Whether any earlier run of `inventory` left a host drained.
pub fn any_stranded(store: &Store, inventory: &Path) -> bool {
    let inventory = absolute(inventory).display().to_string();
    let Ok(run_ids) = store.run_ids() else {
        // Unreadable runs might hold a drain: the run reports it.
        return true;
    };
    run_ids
        .into_iter()
        .any(|run_id| match load_record(store, &run_id) {
            Ok(record) => {
                record
                    .settings
                    .as_ref()
                    .is_some_and(|s| store.same_inventory(&s.inventory, &inventory))
                    && record.hosts.values().any(|h| !h.drained.is_empty())
            }
            // A journal that cannot be read might hold a drain: go on, and
            // let the run report it before touching anything.
            Err(_) => true,
        })
}

/// What `execute` is asked to do.
#[derive(Debug)]
pub enum Kind {
    Start,
    Resume(RunRecord),
    Rollback(RunRecord),
}

/// 0 only when every selected host was updated or skipped and is healthy.
pub(crate) fn exit_for(finish: &Finish, record: &RunRecord, rolling_back: bool) -> Exit {
    if rolling_back {
        let failed = record
            .hosts
            .values()
            .any(|h| h.outcome.is_failure() && h.was_changed());
        return if finish.outcome == RunOutcome::RolledBack && !failed {
            Exit::Success
        } else {
            Exit::Halted
        };
    }
    match finish.outcome {
        RunOutcome::Interrupted => Exit::Interrupted,
        RunOutcome::WindowClosed => Exit::WindowClosed,
        RunOutcome::Halted | RunOutcome::RolledBack => Exit::Halted,
        RunOutcome::Succeeded | RunOutcome::Running => {
            // Only the hosts this run selected: one an earlier run left
            // out, which this run only returned (or kept out), is reported
            // apart and does not make this run's result.
            let selected = record.plan.iter().flat_map(|batch| &batch.hosts);
            if selected
                .filter_map(|name| record.hosts.get(name))
                .any(|h| h.outcome.is_failure() || h.outcome == Outcome::Pending)
            {
                Exit::Halted
            } else {
                Exit::Success
            }
        }
    }
}

/// A new run id for now.
pub fn fresh_run_id() -> String {
    let entropy = std::process::id() ^ (jiff::Timestamp::now().subsec_nanosecond() as u32);
    new_run_id(jiff::Timestamp::now(), entropy)
}

/// Reads a run's record from its journal.
pub fn load_record(store: &Store, run_id: &str) -> Result<RunRecord, AppError> {
    load_journal(store, run_id).map(|(record, _)| record)
}

/// A run's record, and the torn last line its journal ended with, if any.
pub fn load_journal(
    store: &Store,
    run_id: &str,
) -> Result<(RunRecord, Option<TornLine>), AppError> {
    let journal = store.read_journal(run_id).map_err(AppError::Journal)?;
    Ok((replay(run_id, &journal.records), journal.torn))
}

impl From<LockError> for AppError {
    fn from(error: LockError) -> Self {
        AppError::Lock(error)
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
