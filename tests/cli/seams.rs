//! Promises across commands, kills and operators (issue 17), each checked
//! against what the real hosts and the real HAProxy saw: a resumed or
//! retried step never runs beside an earlier instance, `rollback` after a
//! kill undoes the interrupted host, a rolled-back run is not resumed, an
//! operator's MAINT is never lifted, and the exit code agrees with the
//! final words.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fixture::{Fleet, FleetSpec, InventoryOptions};
use crate::promises::{EVENT_WITHIN, Live, RUN_JSON, poll, signal, watching_out_of_service};
use crate::rollout::{Workdir, assert_all_in_service, output, status_json};
use crate::unattended::rollback_playbook;

/// A playbook whose one step logs its start and end on the host, around
/// `body`, with its output kept on the host: a step orphaned by a kill of
/// fleetroll then runs to its end, as a real one does.
fn logged_step_playbook(body: &str, step_extra: &str, strategy: &str) -> String {
    format!(
        r#"name = "deploy"

[vars]
version = "2.0"
previous = "1.0"

[strategy]
{strategy}

[drain]
settle = "100ms"

[[steps]]
name = "deploy"
run = "exec >>{{vars.dir}}/step.out 2>&1; echo start >>{{vars.dir}}/steps.log; {body}; echo end >>{{vars.dir}}/steps.log"
{step_extra}

[[rollback]]
name = "deploy previous"
run = "{{vars.appctl}} {{vars.dir}} deploy {{vars.previous}} 200"

[health]
interval = "100ms"
healthy_after = 2
timeout = "8s"

[[probes]]
http = "http://{{address}}:{{vars.app_port}}/healthz"
"#
    )
}

fn steps_log(fleet: &Fleet, host: &str) -> String {
    std::fs::read_to_string(fleet.host(host).dir.join("steps.log")).unwrap_or_default()
}

/// HAProxy's admin state of `host` (`show servers state`): "drain",
/// "maint" or "ready". `show stat` says DOWN for a drained server whose
/// health check fails, so the admin bits are read instead.
fn admin_state(fleet: &Fleet, host: &str) -> &'static str {
    let table = fleet.haproxy_command("show servers state app");
    let bits: u32 = table
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(3) == Some(&host))
        .and_then(|fields| fields.get(6)?.parse().ok())
        .unwrap_or_else(|| panic!("no server {host} in:\n{table}"));
    match bits {
        0 => "ready",
        bits if bits & 0x01 != 0 => "maint",
        bits if bits & 0x08 != 0 => "drain",
        bits => panic!("admin state {bits:#x} of {host}"),
    }
}

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Issue 17, 1: the remote command of a killed run keeps running (a
/// non-PTY exec is not hung up when the client dies). `resume` must wait
/// for it and say so, never start the same step beside it.
#[test]
fn a_resumed_step_waits_for_the_one_a_kill_left_running_on_the_host() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &logged_step_playbook(
            "sleep 3; {vars.appctl} {vars.dir} deploy {vars.version} 200",
            "timeout = \"30s\"",
            "batch = [1]",
        ),
    );
    let mut run = Live::start(work.command(RUN_JSON), work.path().join("run.stderr"));
    run.until("step_started on web-01", EVENT_WITHIN, |e| {
        e["event"] == "step_started" && e["host"] == "web-01"
    });
    let started = poll(EVENT_WITHIN, || {
        (steps_log(&fleet, "web-01") == "start\n").then_some(())
    });
    assert!(started.is_some(), "web-01's step never started");
    run.kill_9();

    let resume = work.fleetroll(&["resume"]);
    assert_eq!(resume.code, 0, "{}", resume.stderr);
    assert_eq!(
        steps_log(&fleet, "web-01"),
        "start\nend\nstart\nend\n",
        "the resumed step started beside the one the kill left running"
    );
    assert!(
        resume.stderr.contains("still runs on web-01"),
        "resume must say that it waits for the earlier step:\n{}",
        resume.stderr
    );
    assert_eq!(steps_log(&fleet, "web-02"), "start\nend\n");
    for host in ["web-01", "web-02"] {
        assert_eq!(fleet.host(host).version(), "2.0", "{host}");
    }
    assert_all_in_service(&fleet, &[]);
}

/// Issue 17, 1: a step that times out is stopped on the host, not just
/// abandoned: `retries = 1` never starts its second attempt beside the
/// first, and nothing of the step is left running after the run.
#[test]
fn a_step_past_its_timeout_is_stopped_on_the_host_before_its_retry() {
    let fleet = Fleet::start(FleetSpec::new(1, 1));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &logged_step_playbook("sleep 30", "timeout = \"1s\"\nretries = 1", "batch = [1]"),
    );
    let run = work.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let status = status_json(&work);
    assert_eq!(status["hosts"]["web-01"]["outcome"], "timed_out");
    assert!(
        run.stderr.contains("stopped on the host"),
        "the failure must say the step was stopped on the host:\n{}",
        run.stderr
    );
    // Every process of the step (its shell, its sleep) names the log.
    let marker = fleet.host("web-01").dir.join("steps.log");
    let marker = marker.to_string_lossy();
    let gone = poll(Duration::from_secs(10), || {
        let found = std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .expect("run pgrep");
        (!found.status.success()).then_some(())
    });
    assert!(
        gone.is_some(),
        "the timed-out step still runs on the host after the run ended"
    );
    assert_eq!(
        steps_log(&fleet, "web-01"),
        "start\nstart\n",
        "each attempt ran alone and none ran to its end"
    );
}

/// Issue 17, 2: the operator chose to revert; a rolled-back run is
/// finished. `resume` refuses it with exit 2 and says so, and deploys
/// nothing.
#[test]
fn resume_refuses_a_run_that_rollback_undid() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &rollback_playbook("batch = [1]\nmax_failed = 0"),
    );
    let run = work.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let run_id = status_json(&work)["run_id"]
        .as_str()
        .expect("a run id")
        .to_owned();
    let rollback = work.fleetroll(&["rollback", &run_id]);
    assert_eq!(rollback.code, 0, "{}", rollback.stderr);

    for args in [vec!["resume", run_id.as_str()], vec!["resume"]] {
        let resume = work.fleetroll(&args);
        assert_eq!(resume.code, 2, "{args:?}:\n{}", resume.stderr);
        assert!(
            resume.stderr.contains("was rolled back"),
            "{args:?} must say why:\n{}",
            resume.stderr
        );
    }
    assert!(
        fleet.host("web-03").deploys().is_empty(),
        "resume deployed to web-03 after the rollback"
    );
    for host in ["web-01", "web-02"] {
        assert_eq!(fleet.host(host).version(), "1.0", "{host}");
    }
    assert_eq!(status_json(&work)["outcome"], "rolled_back");
    assert_all_in_service(&fleet, &[]);
}

/// Issue 17, 3: after a kill during web-02's step, `rollback` undoes every
/// host whose steps started, the interrupted one first and in the slot it
/// already holds (`max_unavailable = 1`), and leaves none drained.
#[test]
fn rollback_after_a_kill_undoes_the_interrupted_host_first_and_leaves_none_drained() {
    let fleet = Fleet::start(FleetSpec::new(1, 4));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &logged_step_playbook(
            "{vars.appctl} {vars.dir} deploy {vars.version} 200; if [ {host} = web-02 ]; then sleep 3; fi",
            "timeout = \"30s\"",
            "batch = [1]\nmax_unavailable = 1",
        ),
    );
    let mut run = Live::start(work.command(RUN_JSON), work.path().join("run.stderr"));
    run.until("step_started on web-02", EVENT_WITHIN, |e| {
        e["event"] == "step_started" && e["host"] == "web-02"
    });
    let deployed = poll(EVENT_WITHIN, || {
        (fleet.host("web-02").deploys() == ["deploy 2.0"]).then_some(())
    });
    assert!(deployed.is_some(), "web-02's deploy never ran");
    run.kill_9();
    assert_eq!(admin_state(&fleet, "web-02"), "drain");
    let run_id = status_json(&work)["run_id"]
        .as_str()
        .expect("a run id")
        .to_owned();

    let rollback = work.fleetroll(&["rollback", &run_id, "--json"]);
    assert_eq!(rollback.code, 0, "{}", rollback.stderr);
    assert!(
        !rollback.stderr.contains("failed hosts stay out"),
        "no host failed:\n{}",
        rollback.stderr
    );
    let rolled: Vec<String> = events(&rollback.stdout)
        .into_iter()
        .filter(|e| e["event"] == "host_phase" && e["phase"] == "rolled_back")
        .filter_map(|e| e["host"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(rolled, ["web-02", "web-01"], "the interrupted host first");
    for host in ["web-01", "web-02"] {
        assert_eq!(fleet.host(host).version(), "1.0", "{host}");
        assert_eq!(
            fleet.host(host).deploys().last().map(String::as_str),
            Some("deploy 1.0"),
            "{host}"
        );
    }
    for host in ["web-03", "web-04"] {
        assert!(fleet.host(host).deploys().is_empty(), "{host} untouched");
    }
    assert_all_in_service(&fleet, &[]);
    let status = status_json(&work);
    assert_eq!(status["outcome"], "rolled_back");
    for host in ["web-01", "web-02"] {
        assert_eq!(status["hosts"][host]["outcome"], "rolled_back", "{host}");
        assert_eq!(status["hosts"][host]["drained_from"], json!([]), "{host}");
    }
}

/// Issue 17, found by the simulation's rollback chains: a kill between a
/// host's drain and its first step left it out and unchanged; `rollback`
/// planned only the hosts the run changed, so that host stayed drained
/// (with nothing else to undo, `rollback` even said the run "changed no
/// host" and exited 0). It is now returned to service, never deployed.
#[test]
fn rollback_after_a_kill_between_drain_and_step_returns_the_drained_host() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let book = logged_step_playbook(
        "{vars.appctl} {vars.dir} deploy {vars.version} 200",
        "timeout = \"30s\"",
        "batch = [1]\nmax_unavailable = 1",
    )
    .replace("settle = \"100ms\"", "settle = \"20s\"");
    let work = Workdir::new(&fleet, &InventoryOptions::default(), &book);
    let mut run = Live::start(work.command(RUN_JSON), work.path().join("run.stderr"));
    run.until("web-01 done", EVENT_WITHIN, |e| {
        e["event"] == "host_phase" && e["host"] == "web-01" && e["phase"] == "done"
    });
    run.until("web-02's drain", EVENT_WITHIN, |e| {
        e["event"] == "drain" && e["host"] == "web-02"
    });
    // The record comes before the drain itself; the 20 s settle after it
    // is the window for the kill.
    let drained = poll(EVENT_WITHIN, || {
        (admin_state(&fleet, "web-02") == "drain").then_some(())
    });
    assert!(drained.is_some(), "web-02 was never drained");
    run.kill_9();
    assert!(fleet.host("web-02").deploys().is_empty());
    let run_id = status_json(&work)["run_id"]
        .as_str()
        .expect("a run id")
        .to_owned();

    let rollback = work.fleetroll(&["rollback", &run_id, "--json"]);
    assert_eq!(rollback.code, 0, "{}", rollback.stderr);
    assert_eq!(fleet.host("web-01").version(), "1.0");
    assert!(
        fleet.host("web-02").deploys().is_empty(),
        "web-02 was never changed: nothing to undo there"
    );
    assert!(
        fleet.host("web-03").deploys().is_empty(),
        "web-03 untouched"
    );
    assert_all_in_service(&fleet, &[]);
    let status = status_json(&work);
    assert_eq!(status["outcome"], "rolled_back", "{status}");
    assert_eq!(
        status["hosts"]["web-02"]["drained_from"],
        json!([]),
        "{status}"
    );
}

/// Issue 17, 4 and 5: web-02's step failed after its new version was in
/// place, so the run kept it drained; an operator then put it in MAINT.
/// The next `run --limit web-03` leaves web-02 in MAINT (HAProxy's `state
/// ready` would lift it), updates web-03, and its exit code (0), final line
/// and `status` agree.
#[test]
fn an_operators_maint_on_a_host_fleetroll_left_drained_is_never_lifted() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    std::fs::write(fleet.host("web-02").dir.join("FAULT"), "").expect("plant the fault");
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &logged_step_playbook(
            "{vars.appctl} {vars.dir} deploy {vars.version} 200 && if [ -e {vars.dir}/FAULT ]; then exit 7; fi",
            "timeout = \"30s\"",
            "batch = [1]\nmax_failed = 0",
        ),
    );
    let first = work.run(&[]);
    assert_eq!(first.code, 1, "{}", first.stderr);
    assert_eq!(status_json(&work)["hosts"]["web-02"]["outcome"], "failed");
    assert_eq!(admin_state(&fleet, "web-02"), "drain");

    fleet.haproxy_command("set server app/web-02 state maint");
    let second = work.run(&["--limit", "web-03"]);
    assert_eq!(
        admin_state(&fleet, "web-02"),
        "maint",
        "the operator's MAINT was lifted:\n{}",
        second.stderr
    );
    assert_eq!(second.code, 0, "web-03 was updated:\n{}", second.stderr);
    assert!(
        second.stderr.contains("succeeded"),
        "the final words must agree with exit 0:\n{}",
        second.stderr
    );
    assert_eq!(fleet.host("web-03").version(), "2.0");
    let status = status_json(&work);
    assert_eq!(status["outcome"], "succeeded");
    assert_eq!(status["hosts"]["web-03"]["outcome"], "updated");
    assert_eq!(
        status["hosts"]["web-02"]["drained_from"],
        json!([]),
        "fleetroll's drain of web-02 is released to the operator"
    );
    // A later run does not take the operator's host for fleetroll's.
    let third = work.run(&["--limit", "web-03"]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(admin_state(&fleet, "web-02"), "maint");
}

/// Issue 17: the local lock's fence. The holder is frozen (SIGSTOP) during
/// web-01's step; its lock is broken (`unlock --force`, on a clock that
/// makes its heartbeat look old) and the run resumed and finished from
/// another machine sharing the state directory (on this one the frozen
/// process still holds the fleet's lock: that resume exits 4). Woken
/// (SIGCONT) before its heartbeat can tell it, the old holder must write
/// nothing more to the journal the resume wrote, start and return nothing,
/// and exit non-zero saying it lost the lock. HAProxy never had more than
/// `max_unavailable` out.
#[test]
fn a_frozen_holder_whose_local_lock_was_broken_writes_nothing_when_it_wakes() {
    let fleet = Fleet::start(FleetSpec::new(2, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &logged_step_playbook(
            "sleep 2; {vars.appctl} {vars.dir} deploy {vars.version} 200",
            "timeout = \"30s\"",
            "batch = [1]\nmax_unavailable = 1",
        ),
    );
    let ((ended, journal_after_resume, journal), peak) = watching_out_of_service(&fleet, || {
        let mut first = Live::start(work.command(RUN_JSON), work.path().join("run.stderr"));
        first.until("web-01's step", EVENT_WITHIN, |e| {
            e["event"] == "step_started" && e["host"] == "web-01"
        });
        signal(first.pid(), rustix::process::Signal::STOP);
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600);
        let mut unlock = work.command(&["unlock", "-i", "inventory.toml", "--force"]);
        unlock.env("FLEETROLL_FAKE_NOW", later.to_string());
        let broken = output(unlock);
        assert_eq!(broken.code, 0, "{}\n{}", broken.stdout, broken.stderr);
        assert!(broken.stdout.contains("broken"), "{}", broken.stdout);
        // On this machine the frozen process still holds the fleet's lock.
        let refused = work.fleetroll(&["resume"]);
        assert_eq!(refused.code, 4, "{}\n{}", refused.stdout, refused.stderr);
        // Another machine sharing the state directory has its own.
        let elsewhere = work.path().join("other-machine-tmp");
        std::fs::create_dir(&elsewhere).unwrap();
        let mut resume = work.command(&["resume"]);
        resume.env("TMPDIR", &elsewhere);
        let resumed = output(resume);
        assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
        let journal = only_journal(&work);
        let after_resume = std::fs::read(&journal).unwrap();
        signal(first.pid(), rustix::process::Signal::CONT);
        (first.finish(EVENT_WITHIN), after_resume, journal)
    });
    eprintln!("the frozen holder, continued:\n{}", ended.stderr);
    assert_ne!(ended.code, 0, "the fenced holder must fail");
    assert!(
        ended.stderr.contains("lost the inventory's lock")
            || ended.stderr.contains("is no longer this run's"),
        "{}",
        ended.stderr
    );
    let now = std::fs::read(&journal).unwrap();
    assert!(
        now == journal_after_resume,
        "the fenced holder appended to the journal after the resume ended:\n{}",
        String::from_utf8_lossy(&now[journal_after_resume.len().min(now.len())..])
    );
    let touched: Vec<&Value> = ended
        .events
        .iter()
        .filter(|e| {
            e["event"] == "host_phase"
                && (e["phase"] == "undraining"
                    || (e["phase"] == "draining" && e["host"] != "web-01"))
        })
        .collect();
    assert!(touched.is_empty(), "the fenced holder acted: {touched:?}");
    for host in fleet.hosts() {
        assert_eq!(host.version(), "2.0", "{}", host.name);
    }
    assert_all_in_service(&fleet, &[]);
    assert!(peak <= 1, "{peak} hosts were out of service at once");
}

/// The one journal in the work directory's state.
fn only_journal(work: &Workdir) -> std::path::PathBuf {
    let runs: Vec<_> = std::fs::read_dir(work.state().join("runs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.into_iter().next().unwrap()
}
