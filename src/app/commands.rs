//! The run-time commands: run, resume, status, rollback, unlock, demo.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use super::rollout::{
    BreakOutcome, Kind, Rollout, acquire_lock, break_lock, fresh_run_id, take_over_lock,
};
use super::sources::{print_host_warnings, resolve_sources};
use super::state::{Runs, open_store};
use super::{AppError, Exit, RunOptions, load_config, make_plan};
use crate::cli::{
    DemoArgs, FileArgs, RecordedRunArgs, ReportArgs, ResumeArgs, RollbackArgs, RunArgs, RunsArgs,
    StateArgs, StatusArgs, UnlockArgs,
};
use crate::config::diagnostics::Diagnostic;
use crate::events::RunOutcome;
use crate::journal::replay::{BatchVerdict, RunRecord};
use crate::lock::{self, lock_path, staleness, this_host};
use crate::model::inventory::Inventory;
use crate::plan::batches::{Batch, HostId, Plan};
use crate::state::Store;
use crate::state::bucket::Bucket;
use crate::state::lease;
use crate::transport::shell::Connector;
use crate::transport::ssh::{SshConnector, SshOptions};

fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            AppError::Invalid(
                Diagnostic::plain(format!("cannot start the runtime: {error}")).into(),
            )
        })
}

/// The rollout of `config`, reaching hosts over SSH.
fn rollout<'a>(config: &'a crate::config::load::Config, options: &'a RunOptions) -> Rollout<'a> {
    Rollout {
        config,
        options,
        connector: connector(options, &config.inventory),
    }
}

fn connector(options: &RunOptions, inventory: &Inventory) -> Arc<dyn Connector> {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let agent = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from);
    Arc::new(SshConnector::new(
        SshOptions {
            accept_new_host_keys: options.accept_new_host_keys,
            max_handshakes: inventory.max_handshakes,
            ..SshOptions::default()
        },
        home,
        agent,
    ))
}

pub fn run(args: &RunArgs, quiet: bool, verbose: bool, color: bool) -> Result<Exit, AppError> {
    let clock = clock()?;
    let runtime = runtime()?;
    let mut config = load_config(&args.files, quiet, color)?;
    let options = RunOptions {
        inventory: args.files.inventory.clone(),
        playbook: args.files.playbook.clone(),
        vars: args.files.vars.clone(),
        limit: args.files.limit.clone(),
        state: open_store(
            &config.inventory.state,
            &args.files.inventory,
            args.state.state_dir.as_deref(),
        )?,
        json: args.json,
        quiet,
        verbose,
        terminal: std::io::stderr().is_terminal(),
        accept_new_host_keys: args.accept_new_host_keys,
        metrics_file: args.metrics_file.clone(),
        clock,
    };
    // A dry run touches nothing, so it may check the hosts at any time
    // (before the night's window, typically).
    if !args.dry_run
        && !crate::app::rollout::any_stranded(&options.state, &options.inventory)
        && let Some(exit) = outside_window(&config, &options, quiet)
    {
        // Nothing of an earlier run is left out of service: touch nothing.
        return Ok(exit);
    }
    runtime.block_on(resolve_sources(&mut config))?;
    let plan = make_plan(&config, &args.files.limit)?;
    if args.dry_run {
        print_host_warnings(&config, quiet);
        return runtime.block_on(dry_run_plan(&config, &plan, &options));
    }
    let run_id = fresh_run_id();
    let rollout = rollout(&config, &options);
    let acquire = || {
        acquire_lock(
            &options.state,
            &options.inventory,
            &run_id,
            options.clock.now(),
        )
    };
    runtime.block_on(rollout.execute(&plan, run_id.clone(), acquire, Kind::Start))
}

fn clock() -> Result<crate::clock::Clock, AppError> {
    crate::clock::Clock::from_env().map_err(invalid)
}

/// A run started outside its maintenance window touches nothing: exit 3.
fn outside_window(
    config: &crate::config::load::Config,
    options: &RunOptions,
    quiet: bool,
) -> Option<Exit> {
    let window = config.playbook.window.as_ref()?;
    let now = options.clock.now();
    match crate::plan::window::window_state(window, now) {
        Ok(crate::plan::window::WindowState::Open { .. }) => None,
        Ok(crate::plan::window::WindowState::Closed { .. }) | Err(_) => {
            if !quiet {
                tracing::info!(
                    "fleetroll: outside the maintenance window; nothing was touched. The window {}",
                    crate::plan::window::describe_next(window, now)
                );
            }
            Some(Exit::WindowClosed)
        }
    }
}

pub fn resume(
    args: &ResumeArgs,
    quiet: bool,
    verbose: bool,
    color: bool,
) -> Result<Exit, AppError> {
    let runs = Runs::locate(&args.recorded.runs)?;
    let run_id = runs.run_id(args.run_id.as_deref())?;
    let (record, _) = runs.load(&run_id)?;
    let Some(settings) = record.settings.clone() else {
        return Err(invalid(format!(
            "run {run_id} has no start record; there is nothing to resume"
        )));
    };
    if record.rolled_back_by_command || record.outcome == RunOutcome::RolledBack {
        let how = if record.rolled_back_by_command {
            "`fleetroll rollback` undid it"
        } else {
            "`on_failure = \"rollback\"` undid its failed batch"
        };
        return Err(invalid(format!(
            "run {run_id} was rolled back ({how}): a rolled-back run is finished and is not resumed. \
             Start a new run with `fleetroll run`{}",
            if record.rolled_back_by_command && record.outcome != RunOutcome::RolledBack {
                format!(", or finish the interrupted rollback with `fleetroll rollback {run_id}`")
            } else {
                String::new()
            }
        )));
    }
    if record.outcome == RunOutcome::Succeeded && record.hosts.values().all(|h| h.is_settled()) {
        if !quiet {
            tracing::info!("run {run_id} already finished: {}", record.outcome.label());
        }
        return Ok(Exit::Success);
    }
    let missing: Vec<&String> = settings
        .var_names
        .iter()
        .filter(|name| !args.recorded.vars.iter().any(|(k, _)| k == *name))
        .collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|n| format!("--var {n}=…")).collect();
        return Err(invalid(format!(
            "run {run_id} was started with {}; pass them again (their values are not kept in the journal)",
            names.join(" ")
        )));
    }
    let (files, options) = recorded_options(&settings, &args.recorded, &runs, quiet, verbose)?;
    let runtime = runtime()?;
    let mut config = load_config(&files, quiet, color)?;
    check_steps(&record, &config, &files.playbook, "resume", quiet)?;
    // Outside the window the run still finishes the hosts its interruption
    // left out of service (they must not stay out), starts no other, and
    // exits 3; that is the dispatcher's to decide.
    runtime.block_on(resolve_sources(&mut config))?;
    adopt_replaced_names(&mut config, &record);
    stand_in_for_terminated_instances(&mut config, &record)?;
    let fresh = make_plan(&config, &files.limit)?;
    let plan = recorded_plan(&record, &config, fresh)?;
    let rollout = rollout(&config, &options);
    let acquire = || {
        take_over_lock(
            &runs.store,
            &options.inventory,
            &run_id,
            options.clock.now(),
        )
    };
    runtime.block_on(rollout.execute(&plan, run_id.clone(), acquire, Kind::Resume(record)))
}

/// Refuses a playbook whose steps are not those the run started with: the
/// journal counts steps by position, which would then mean other steps.
fn check_steps(
    record: &RunRecord,
    config: &crate::config::load::Config,
    playbook: &std::path::Path,
    doing: &str,
    quiet: bool,
) -> Result<(), AppError> {
    use crate::journal::fingerprint::{changes, fingerprint};
    let Some(recorded) = &record.fingerprint else {
        if !quiet {
            tracing::warn!(
                "run {} was recorded by an older fleetroll, without the playbook's steps; \
                 they cannot be checked against {}",
                record.run_id,
                playbook.display()
            );
        }
        return Ok(());
    };
    let found = changes(
        recorded,
        &fingerprint(&config.playbook),
        record.rollback_steps_started,
    );
    if found.is_empty() {
        return Ok(());
    }
    Err(AppError::Invalid(
        Diagnostic::plain(format!(
            "the steps of {} changed since run {} started: {}",
            playbook.display(),
            record.run_id,
            found.join("; ")
        ))
        .with_help(format!(
            "the journal counts steps by position, so it would no longer match them: \
             restore the playbook's steps as the run started with them to {doing} it, or start a new run"
        ))
        .into(),
    ))
}

/// The files and options of a run as it was started, for `resume` and
/// `rollback`; `--var` values come from this command line.
fn recorded_options(
    settings: &crate::events::RunSettings,
    args: &RecordedRunArgs,
    runs: &Runs,
    quiet: bool,
    verbose: bool,
) -> Result<(FileArgs, RunOptions), AppError> {
    // Another machine keeps the files elsewhere: the inventory as given
    // with -i, the playbook as given with -p, else where the run had them.
    let files = FileArgs {
        inventory: runs
            .inventory_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(&settings.inventory)),
        playbook: args
            .playbook
            .clone()
            .unwrap_or_else(|| PathBuf::from(&settings.playbook)),
        vars: args.vars.clone(),
        limit: settings.limit.clone(),
    };
    let options = RunOptions {
        inventory: files.inventory.clone(),
        playbook: files.playbook.clone(),
        vars: files.vars.clone(),
        limit: files.limit.clone(),
        state: runs.store.clone(),
        json: args.json,
        quiet,
        verbose,
        terminal: std::io::stderr().is_terminal(),
        accept_new_host_keys: settings.accept_new_host_keys,
        metrics_file: args.metrics_file.clone(),
        clock: clock()?,
    };
    Ok((files, options))
}

/// Instances a run put in place of others carry the journal's host names,
/// so that the run's record of them (done, or half-way) still applies.
fn adopt_replaced_names(config: &mut crate::config::load::Config, record: &RunRecord) {
    for (name, host_record) in &record.hosts {
        let Some(new) = host_record.replaced_by.as_deref() else {
            continue;
        };
        for zone in &mut config.inventory.zones {
            for host in &mut zone.hosts {
                if host.target_id.as_deref() == Some(new) && host.name != *name {
                    host.lb_server = host.lb_server.replace(&host.name, name);
                    host.name = name.clone();
                }
            }
        }
    }
}

/// A replacement interrupted after it terminated the old instance leaves a
/// host that discovery no longer finds. It is put back as its old instance,
/// with the source and group of an instance still in that group, so that
/// the resumed replacement can wait for (and claim) the instance launched
/// in its place. Its address is the old instance's id: it is never
/// connected to, since the next thing it does is the replacement.
fn stand_in_for_terminated_instances(
    config: &mut crate::config::load::Config,
    record: &RunRecord,
) -> Result<(), AppError> {
    for (name, host_record) in &record.hosts {
        let Some(replacing) = &host_record.replacing else {
            continue;
        };
        let found = config.inventory.hosts().any(|h| {
            h.name == *name || h.target_id.as_deref() == Some(replacing.old_instance.as_str())
        });
        if found || host_record.is_settled() {
            continue;
        }
        let Some(sibling) = config
            .inventory
            .hosts()
            .find(|h| {
                h.aws.as_ref().and_then(|origin| origin.asg.as_deref())
                    == Some(replacing.group.as_str())
            })
            .cloned()
        else {
            return Err(invalid(format!(
                "host {name} of run {}: its instance {} was being replaced when the run was interrupted, \
                 and Auto Scaling group {} has no instance yet to take its place; \
                 resume again once the group has launched one",
                record.run_id, replacing.old_instance, replacing.group
            )));
        };
        // The zone it was planned in, if the inventory still has it.
        let zone = record
            .zone_of(name)
            .filter(|zone| config.inventory.zones.iter().any(|z| z.name == *zone))
            .unwrap_or(sibling.zone.as_str())
            .to_owned();
        let host = crate::model::inventory::Host {
            name: name.clone(),
            address: replacing.old_instance.clone(),
            lb_server: sibling.lb_server.replace(&sibling.name, name),
            target_id: Some(replacing.old_instance.clone()),
            zone: zone.clone(),
            ..sibling
        };
        if let Some(zone) = config.inventory.zones.iter_mut().find(|z| z.name == zone) {
            zone.hosts.push(host);
        }
    }
    Ok(())
}

/// The batches as the run recorded them (so hosts stay in their batches),
/// with caps and budgets from today's files.
fn recorded_plan(
    record: &RunRecord,
    config: &crate::config::load::Config,
    fresh: Plan,
) -> Result<Plan, AppError> {
    let ids: std::collections::HashMap<&str, HostId> = config
        .inventory
        .hosts()
        .enumerate()
        .map(|(index, host)| (host.name.as_str(), HostId(index as u32)))
        .collect();
    // A replaced instance is found again by the id the journal recorded.
    let by_instance: std::collections::HashMap<&str, HostId> = config
        .inventory
        .hosts()
        .enumerate()
        .filter_map(|(index, host)| Some((host.target_id.as_deref()?, HostId(index as u32))))
        .collect();
    let mut batches = Vec::new();
    for batch in &record.plan {
        let mut hosts = Vec::new();
        for name in &batch.hosts {
            let recorded = record.hosts.get(name);
            let id = ids.get(name.as_str()).or_else(|| {
                recorded
                    .and_then(|r| r.replaced_by.as_deref())
                    .and_then(|new| by_instance.get(new))
            });
            match id {
                Some(id) => hosts.push(*id),
                // Finished before, and gone since (replaced): nothing to do.
                None if recorded.is_some_and(|r| r.is_settled()) => {}
                None => {
                    return Err(invalid(format!(
                        "host {name} of run {} is no longer in the inventory; finish the run with the inventory it started with",
                        record.run_id
                    )));
                }
            }
        }
        batches.push(Batch {
            index: batch.index,
            zones: batch.zones.clone(),
            hosts,
        });
    }
    Ok(Plan {
        batches,
        failure_budget: record.failure_budget,
        ..fresh
    })
}

fn invalid(message: String) -> AppError {
    AppError::Invalid(Diagnostic::plain(message).into())
}

pub fn status(args: &StatusArgs) -> Result<Exit, AppError> {
    let runs = Runs::locate(&args.runs)?;
    let run_id = runs.run_id(args.run_id.as_deref())?;
    let (record, torn) = runs.load(&run_id)?;
    let outcome = live_outcome(&runs.store, &record);
    // A host still out of service counts until now.
    let now = crate::clock::Clock::from_env()
        .ok()
        .map(|clock| clock.now());
    if args.json {
        let hosts: serde_json::Map<String, serde_json::Value> = record
            .hosts
            .iter()
            .map(|(name, host)| {
                (
                    name.clone(),
                    serde_json::json!({
                        "phase": host.phase.label(),
                        "outcome": host.outcome.label(),
                        "zone": record.zone_of(name),
                        "drained_from": host.drained,
                        "out_of_service_ms": host.out_of_service_ms_until(now),
                        "detail": host.detail,
                        "failed_step": host.failed_step.as_ref().map(|f| &f.step),
                        "exit_code": host.failed_step.as_ref().and_then(|f| f.exit_code),
                    }),
                )
            })
            .collect();
        let batches: Vec<serde_json::Value> = record
            .plan
            .iter()
            .map(|b| {
                serde_json::json!({
                    "index": b.index,
                    "zones": b.zones,
                    "hosts": b.hosts,
                    "ok": match record.batch_verdict(b) {
                        BatchVerdict::NotFinished => None,
                        verdict => Some(verdict == BatchVerdict::Ok),
                    },
                })
            })
            .collect();
        let json = serde_json::json!({
            "run_id": record.run_id,
            "outcome": outcome.label(),
            "playbook": record.playbook,
            "started": record.started,
            "finished": record.finished,
            "reason": record.reason,
            "hosts": hosts,
            "batches": batches,
            "torn_line": torn.map(|t| t.line),
        });
        println!("{json}");
        return Ok(Exit::Success);
    }
    println!(
        "run {} ({}): {}",
        record.run_id,
        record.playbook,
        outcome.label()
    );
    if let Some(reason) = &record.reason {
        println!("  {reason}");
    }
    if let Some(torn) = torn {
        println!(
            "  the journal's last line ({}) is cut short (an interruption, or a record being written) and is not counted",
            torn.line
        );
    }
    for batch in &record.plan {
        let state = match record.batch_verdict(batch) {
            BatchVerdict::NotFinished => "not finished".to_owned(),
            BatchVerdict::Ok => "ok".to_owned(),
            BatchVerdict::Failed => "failed".to_owned(),
            BatchVerdict::HostsFailed(failed) => {
                format!("{failed} of {} hosts failed", batch.hosts.len())
            }
        };
        println!(
            "  batch {} ({}): {state}",
            batch.index + 1,
            batch.zones.join(",")
        );
        for name in &batch.hosts {
            let host = &record.hosts[name];
            let drained = if host.drained.is_empty() {
                String::new()
            } else {
                format!(", out of {}", host.drained.join(","))
            };
            let detail = host
                .detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            println!(
                "    {name}  {} / {}{drained}{detail}",
                host.phase.label(),
                host.outcome.label()
            );
        }
    }
    Ok(Exit::Success)
}

/// A run without an end record is running if its lock is held by a live
/// process, and interrupted otherwise.
pub(crate) fn live_outcome(store: &Store, record: &RunRecord) -> RunOutcome {
    if record.outcome != RunOutcome::Running {
        return record.outcome;
    }
    let Some(settings) = &record.settings else {
        return RunOutcome::Interrupted;
    };
    let holder = match store {
        Store::Dir(dir) => {
            lock::read(&lock_path(dir, std::path::Path::new(&settings.inventory))).ok()
        }
        Store::Bucket { bucket, .. } => match lease::read(bucket) {
            Ok(Some(lease::Read {
                object: lease::LockObject::Held(holder),
                ..
            })) => Some(holder),
            _ => None,
        },
    };
    match holder {
        Some(holder)
            if holder.run_id == record.run_id
                && staleness(&holder, jiff::Timestamp::now(), store.pid_host().as_deref())
                    .is_none() =>
        {
            RunOutcome::Running
        }
        _ => RunOutcome::Interrupted,
    }
}

pub fn unlock(args: &UnlockArgs) -> Result<Exit, AppError> {
    let runs = Runs::locate(&args.runs)?;
    let state_dir = match &runs.store {
        Store::Dir(dir) => dir,
        Store::Bucket { bucket, .. } => return unlock_lease(&runs.store, bucket, args.force),
    };
    let paths = match &args.runs.inventory {
        Some(inventory) => vec![lock_path(state_dir, inventory)]
            .into_iter()
            .filter(|p| p.exists())
            .collect(),
        None => lock::all_locks(state_dir),
    };
    if paths.is_empty() {
        match &runs.inventory {
            Some(inventory) => println!("{inventory} is not locked (in {})", state_dir.display()),
            None => println!("no locks in {}", state_dir.display()),
        }
        return Ok(Exit::Success);
    }
    let now = clock()?.now();
    let mut refused = false;
    for path in paths {
        let holder = lock::read(&path);
        let stale = match &holder {
            Ok(holder) => staleness(holder, now, Some(&this_host())),
            Err(error) => Some(error.to_string()),
        };
        match &holder {
            Ok(h) => println!(
                "{}: run {} by pid {} on {}, since {}, last heartbeat {}{}",
                h.inventory,
                h.run_id,
                h.pid,
                h.host,
                h.since,
                h.heartbeat,
                stale
                    .as_deref()
                    .map(|s| format!(" (stale: {s})"))
                    .unwrap_or_else(|| " (alive)".to_owned())
            ),
            Err(error) => println!("{}: {error}", path.display()),
        }
        if !args.force {
            continue;
        }
        if stale.is_none() {
            refused = true;
            tracing::info!(
                "  not broken: its holder is alive; stop that run first (SIGINT lets it finish cleanly)"
            );
            continue;
        }
        match break_lock(&runs.store, &path, holder.as_ref().ok(), now)? {
            BreakOutcome::Broken => println!("  broken"),
            BreakOutcome::Gone => println!("  already gone"),
            BreakOutcome::Changed(now_held) => {
                refused = true;
                tracing::info!(
                    "  not broken: the lock changed while it was checked ({now_held}); run `fleetroll unlock` again to see it"
                );
            }
        }
    }
    Ok(if refused { Exit::Locked } else { Exit::Success })
}

/// `unlock` for a lock in a bucket: the lease is shown, and with `--force`
/// a holder whose lock did not change for a whole lease while this machine
/// watched it (its own monotonic clock; the holder's timestamps come from
/// another clock) is fenced (its journal gets `lock_broken` in its next
/// segment) and its lock released, if the lock is still the one judged.
fn unlock_lease(store: &Store, bucket: &Bucket, force: bool) -> Result<Exit, AppError> {
    let Some(judged) = lease::read(bucket)? else {
        println!("{} is not locked", bucket.location());
        return Ok(Exit::Success);
    };
    let holder = match &judged.object {
        lease::LockObject::Held(holder) => holder.clone(),
        lease::LockObject::Released { released, by } => {
            println!(
                "{} is not locked (released {released}: {by})",
                bucket.location()
            );
            return Ok(Exit::Success);
        }
    };
    let now = jiff::Timestamp::now();
    let stale = staleness(&holder, now, None);
    println!(
        "{}: run {} by pid {} on {}, since {}, last heartbeat {}{}",
        bucket.location(),
        holder.run_id,
        holder.pid,
        holder.host,
        holder.since,
        holder.heartbeat,
        stale
            .as_deref()
            .map(|s| format!(" (stale by this machine's clock: {s})"))
            .unwrap_or_else(|| format!(" (alive: its lease is {}s)", holder.lease().as_secs()))
    );
    if !force {
        return Ok(Exit::Success);
    }
    tracing::info!(
        "  watching it for up to {}s: it is broken only if its heartbeat does not move meanwhile",
        holder.lease().as_secs()
    );
    let judged = match lease::watch_for_silence(bucket, judged, holder.lease())? {
        lease::Watched::Silent(judged) => judged,
        lease::Watched::Renewed(alive) => {
            tracing::info!(
                "  not broken: its heartbeat moved, run {} is alive on {}; stop that run first",
                alive.run_id,
                alive.host
            );
            return Ok(Exit::Locked);
        }
        lease::Watched::Changed => {
            tracing::info!(
                "  not broken: the lock changed while it was watched; run `fleetroll unlock` again to see it"
            );
            return Ok(Exit::Locked);
        }
    };
    crate::app::rollout::record_lock_broken(store, &holder, now).map_err(AppError::Journal)?;
    let by = format!(
        "broken by `unlock --force` (pid {} on {})",
        std::process::id(),
        this_host()
    );
    if lease::release_judged(bucket, &judged, &by)? {
        println!("  broken");
        Ok(Exit::Success)
    } else {
        tracing::info!(
            "  not broken: the lock changed while it was checked; run `fleetroll unlock` again to see it"
        );
        Ok(Exit::Locked)
    }
}

/// `fleetroll demo`: the real `run` over a fleet simulated in this process,
/// with traffic through its balancer the whole time. With `--bad-release`,
/// the release fails part of its real requests and the playbook watches
/// each returned host's traffic (`[watch]`).
pub fn demo(args: &DemoArgs, quiet: bool, verbose: bool, color: bool) -> Result<Exit, AppError> {
    use crate::sim::{BAD_RELEASE_FAIL_PERCENT, SimFleet, SimSpec};
    let spec = SimSpec {
        bad_release: args.bad_release,
        ..SimSpec::demo()
    };
    let fleet = SimFleet::spawn_background(spec.clone())
        .map_err(|error| invalid(format!("cannot start the demo fleet: {error}")))?;
    if !quiet {
        let release = if args.bad_release {
            format!(
                "rolling out 2.0, a bad release: its health check passes, but it answers \
                 {BAD_RELEASE_FAIL_PERCENT}% of its real requests with HTTP 500; the playbook's [watch] \
                 judges each returned host on its real traffic"
            )
        } else {
            "rolling out 2.0".to_owned()
        };
        tracing::info!(
            "demo: {} simulated hosts in {} zones, each a real SSH server and an HTTP app at version {}, \
             behind a drain-aware balancer with live traffic; {release}\n  files: {}\n",
            fleet.hosts().len(),
            spec.zones.len(),
            spec.version,
            fleet.dir().display()
        );
    }
    let run_args = RunArgs {
        files: FileArgs {
            inventory: fleet.inventory_path().to_path_buf(),
            playbook: fleet.playbook_path().to_path_buf(),
            vars: Vec::new(),
            limit: Vec::new(),
        },
        state: StateArgs {
            state_dir: Some(fleet.dir().join("state")),
        },
        json: args.json,
        accept_new_host_keys: false,
        metrics_file: None,
        dry_run: false,
    };
    let exit = run(&run_args, quiet, verbose, color);
    // Read now: the hosts' state goes with the fleet.
    let running = fleet.versions();
    if let Some(html) = &args.html {
        super::history::report(&ReportArgs {
            run_id: None,
            runs: RunsArgs {
                inventory: None,
                state_dir: run_args.state.state_dir.clone(),
            },
            html: html.clone(),
        })?;
    }
    let report = fleet.stop();
    if !quiet {
        let versions: Vec<String> = report
            .by_version
            .iter()
            .map(|(v, n)| format!("{n} served {v}"))
            .collect();
        tracing::info!(
            "\ntraffic during the rollout: {} requests, {} failed ({})",
            report.ok + report.failed,
            report.failed,
            versions.join(", ")
        );
        for failure in &report.failures {
            tracing::info!("  {failure}");
        }
        if args.bad_release {
            let reached: Vec<&str> = running
                .iter()
                .filter(|(_, version)| *version != spec.version)
                .map(|(name, _)| name.as_str())
                .collect();
            let others = running.len() - reached.len();
            let spread = match (reached.len(), others) {
                (0, _) => "it reached no host".to_owned(),
                (_, 0) => format!("every host got it ({})", reached.join(", ")),
                _ => format!(
                    "it reached {} only, and the other {others} hosts never got it (they still run {})",
                    reached.join(", "),
                    spec.version
                ),
            };
            tracing::info!(
                "the bad release answered {} requests with HTTP 500; {spread}",
                report.by_status.get(&500).copied().unwrap_or(0)
            );
        }
    }
    match exit {
        Ok(Exit::Success) if report.failed > 0 => Ok(Exit::Halted),
        other => other,
    }
}

/// `fleetroll rollback RUN_ID`: undo what a run changed, newest batch first.
pub fn rollback(
    args: &RollbackArgs,
    quiet: bool,
    verbose: bool,
    color: bool,
) -> Result<Exit, AppError> {
    let runs = Runs::locate(&args.recorded.runs)?;
    let run_id = args.run_id.clone();
    let (record, _) = runs.load(&run_id)?;
    let Some(settings) = record.settings.clone() else {
        return Err(invalid(format!(
            "run {run_id} has no start record; there is nothing to roll back"
        )));
    };
    let (files, options) = recorded_options(&settings, &args.recorded, &runs, quiet, verbose)?;
    let runtime = runtime()?;
    let mut config = load_config(&files, quiet, color)?;
    check_steps(&record, &config, &files.playbook, "roll back", quiet)?;
    runtime.block_on(resolve_sources(&mut config))?;
    adopt_replaced_names(&mut config, &record);
    if config.playbook.rollback.is_empty() {
        return Err(invalid(format!(
            "the playbook {} has no [[rollback]] steps; there is nothing to roll back with",
            settings.playbook
        )));
    }
    let fresh = make_plan(&config, &files.limit)?;
    let mut plan = recorded_plan(&record, &config, fresh)?;
    // Newest batch first, only the hosts the run changed.
    let names: Vec<&str> = config.inventory.hosts().map(|h| h.name.as_str()).collect();
    plan.batches.reverse();
    for batch in &mut plan.batches {
        batch.hosts.retain(|id| {
            record
                .hosts
                .get(names[id.0 as usize])
                .is_some_and(|h| h.to_roll_back())
        });
    }
    plan.batches.retain(|b| !b.hosts.is_empty());
    // A kill between a host's drain and its first step leaves it out and
    // unchanged: the rollback only returns it.
    let drained_unchanged = record.hosts.values().any(|h| h.out_unchanged());
    if plan.batches.is_empty() && !drained_unchanged {
        if !quiet {
            tracing::info!("run {run_id} changed no host that is not already rolled back");
        }
        return Ok(Exit::Success);
    }
    let rollout = rollout(&config, &options);
    let acquire = || {
        take_over_lock(
            &runs.store,
            &options.inventory,
            &run_id,
            options.clock.now(),
        )
    };
    runtime.block_on(rollout.execute(&plan, run_id.clone(), acquire, Kind::Rollback(record)))
}

/// `run --dry-run`: the balancers are checked as for a run, then each host.
async fn dry_run_plan(
    config: &crate::config::load::Config,
    plan: &crate::plan::batches::Plan,
    options: &RunOptions,
) -> Result<Exit, AppError> {
    let all: Vec<&crate::model::inventory::Host> = config.inventory.hosts().collect();
    let selected: Vec<&crate::model::inventory::Host> = plan
        .batches
        .iter()
        .flat_map(|b| b.hosts.iter().map(|id| all[id.0 as usize]))
        .collect();
    let balancers = super::rollout::balancers(&config.inventory).await;
    super::rollout::check_balancers(&selected, &balancers).await?;
    let needs_ssh = crate::exec::env::RunEnv::needs_ssh(&config.playbook, &config.inventory);
    let hosts = selected.into_iter().cloned().collect();
    let checks = super::dry_run::dry_run(
        config,
        hosts,
        connector(options, &config.inventory),
        &balancers,
        needs_ssh,
    )
    .await;
    Ok(super::dry_run::report(&checks, options.json))
}
