//! `fleetroll run` against real sshd hosts behind a real HAProxy.
//!
//! Each test starts its own fleet (its own 127.0.1.N addresses, sshd, apps
//! and HAProxy) and state directory, so tests run in parallel.

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::fixture::{Fleet, FleetSpec, InventoryOptions, Traffic};
use crate::support::Output;

/// A playbook that deploys `{vars.version}` with the fixture's `appctl`,
/// which really stops and restarts the host's app.
pub(crate) fn playbook(extra_step: &str, strategy: &str) -> String {
    format!(
        r#"name = "deploy"

[vars]
version = "2.0"

[strategy]
{strategy}
skip_if = "test \"$({{vars.appctl}} {{vars.dir}} version)\" = {{vars.version}}"

[drain]
timeout = "10s"
settle = "100ms"

[[steps]]
name = "deploy"
run = "{{vars.appctl}} {{vars.dir}} deploy {{vars.version}} 200{extra_step}"
timeout = "30s"

[health]
interval = "100ms"
healthy_after = 3
timeout = "8s"

[[probes]]
http = "http://{{address}}:{{vars.app_port}}/healthz"
expect_body = "{{vars.version}}"

[[probes]]
tcp = "{{address}}:{{vars.app_port}}"

[[probes]]
command = "test \"$({{vars.appctl}} {{vars.dir}} version)\" = {{vars.version}}"
"#
    )
}

/// A scratch directory holding the inventory, playbook and state.
pub(crate) struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    pub(crate) fn new(fleet: &Fleet, options: &InventoryOptions, playbook: &str) -> Self {
        let dir = tempfile::tempdir().expect("scratch dir");
        fleet.write_inventory(&dir.path().join("inventory.toml"), options);
        std::fs::write(dir.path().join("playbook.toml"), playbook).expect("write playbook");
        Self { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fleetroll"));
        command
            .args(args)
            .arg("--state-dir")
            .arg(self.path().join("state"))
            .current_dir(self.path())
            .env("NO_COLOR", "1");
        command
    }

    pub(crate) fn run(&self, extra: &[&str]) -> Output {
        let mut args = vec!["run", "-i", "inventory.toml", "-p", "playbook.toml"];
        args.extend_from_slice(extra);
        output(self.command(&args))
    }

    pub(crate) fn fleetroll(&self, args: &[&str]) -> Output {
        output(self.command(args))
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Starts `fleetroll run --json` and returns once it has printed an
    /// event containing `marker`, with the rest of its output unread.
    pub(crate) fn run_until(&self, marker: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
        let mut child = self
            .command(&[
                "run",
                "-i",
                "inventory.toml",
                "-p",
                "playbook.toml",
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fleetroll run");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        for line in lines.by_ref() {
            if line.expect("read fleetroll's output").contains(marker) {
                return (child, lines);
            }
        }
        let status = child.wait();
        panic!("fleetroll ended ({status:?}) before printing {marker}");
    }
}

pub(crate) fn output(mut command: Command) -> Output {
    let output = command.output().expect("run fleetroll");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub(crate) fn status_json(work: &Workdir) -> serde_json::Value {
    let status = work.fleetroll(&["status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    serde_json::from_str(&status.stdout).expect("status --json is one object")
}

/// Every server HAProxy knows is UP and ready, except `except`.
pub(crate) fn assert_all_in_service(fleet: &Fleet, except: &[&str]) {
    for state in fleet.server_states() {
        if except.contains(&state.name.as_str()) {
            continue;
        }
        assert_eq!(
            state.status, "UP",
            "{} is not back in service: {state:?}",
            state.name
        );
    }
}

#[test]
fn rolling_deploy_of_nine_hosts_in_three_zones_loses_no_request() {
    let fleet = Fleet::start(FleetSpec::new(3, 3));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook("", "batch = [1, 2]\nmax_unavailable = 2"),
    );
    let traffic = Traffic::start(&fleet.frontend_url(), 4);
    let run = work.run(&["--json"]);
    let report = traffic.stop();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        report.failed, 0,
        "requests failed during the rollout: {report}"
    );
    assert!(
        report.ok > 50,
        "too little traffic to prove anything: {report}"
    );
    for host in fleet.hosts() {
        assert_eq!(host.version(), "2.0", "{}", host.name);
        assert_eq!(
            host.deploys().len(),
            1,
            "{} deployed more than once",
            host.name
        );
    }
    assert_all_in_service(&fleet, &[]);
    // The JSON stream carries the SPEC's events, in order.
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert_eq!(kinds.iter().filter(|k| **k == "batch_started").count(), 6);
    assert!(kinds.contains(&"step_finished") && kinds.contains(&"probe"));
    let finished = events
        .iter()
        .find(|e| e["event"] == "run_finished")
        .unwrap();
    assert_eq!(finished["outcome"], "succeeded");
    assert_eq!(finished["updated"], 9);
    // A batch never spans two zones and never exceeds max_unavailable.
    for batch in events.iter().filter(|e| e["event"] == "batch_started") {
        assert_eq!(batch["zones"].as_array().unwrap().len(), 1);
        assert!(batch["hosts"].as_array().unwrap().len() <= 2);
    }
}

#[test]
fn a_host_that_never_becomes_healthy_stays_drained_and_halts_the_run() {
    let fleet = Fleet::start(FleetSpec::new(2, 2));
    // web-02's new version answers 500 forever.
    let breaks =
        " && if [ {host} = web-02 ]; then touch {vars.dir}/BROKEN; echo web-02 broke >&2; fi";
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook(breaks, "batch = [1]\nmax_failed = 0")
            .replace("timeout = \"8s\"", "timeout = \"2s\""),
    );
    let run = work.run(&[]);
    assert_eq!(
        run.code, 1,
        "a spent failure budget exits 1:\n{}",
        run.stderr
    );
    // web-01 updated, web-02 failed and halted the run before the others.
    assert_eq!(fleet.host("web-01").version(), "2.0");
    for untouched in ["web-03", "web-04"] {
        assert_eq!(
            fleet.host(untouched).version(),
            "1.0",
            "{untouched} must not be touched"
        );
        assert!(fleet.host(untouched).deploys().is_empty());
    }
    let status = status_json(&work);
    assert_eq!(status["outcome"], "halted");
    assert_eq!(status["hosts"]["web-02"]["outcome"], "unhealthy");
    assert_eq!(
        status["hosts"]["web-02"]["drained_from"],
        serde_json::json!(["web"])
    );
    assert_eq!(status["hosts"]["web-03"]["outcome"], "pending");
    // The failed host stays out of the balancer; no other host does.
    // HAProxy shows a drained server failing its checks as DOWN; its admin
    // state says drain (0x08 in `show servers state`).
    assert_ne!(fleet.server_state("web-02").status, "UP");
    let servers = fleet.haproxy_command("show servers state app");
    let row = servers
        .lines()
        .find(|l| l.contains(" web-02 "))
        .expect("web-02 row");
    assert_eq!(row.split_whitespace().nth(6), Some("8"), "{row}");
    assert_all_in_service(&fleet, &["web-02"]);
    // The summary names the host, its outcome and what the probe saw.
    assert!(run.stderr.contains("web-02"), "{}", run.stderr);
    assert!(run.stderr.contains("unhealthy"), "{}", run.stderr);
    assert!(run.stderr.contains("status 500"), "{}", run.stderr);
    assert!(run.stderr.contains("still out"), "{}", run.stderr);
}

#[test]
fn a_failing_step_reports_its_exit_code_and_output() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let fails = " && if [ {host} = web-01 ]; then echo disk full >&2; exit 7; fi";
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook(fails, "batch = [1]\nmax_failed = 1"),
    );
    let run = work.run(&[]);
    // The budget tolerates one failure: web-02 is still updated, exit is 1.
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(fleet.host("web-02").version(), "2.0");
    let status = status_json(&work);
    assert_eq!(status["hosts"]["web-01"]["outcome"], "failed");
    assert_eq!(status["hosts"]["web-01"]["exit_code"], 7);
    assert_eq!(status["hosts"]["web-01"]["failed_step"], "deploy");
    assert!(run.stderr.contains("disk full"), "{}", run.stderr);
    assert_eq!(fleet.server_state("web-01").status, "DRAIN");
    assert_all_in_service(&fleet, &["web-01"]);
}

#[test]
fn kill_9_mid_batch_then_resume_finishes_without_redoing_finished_hosts() {
    let fleet = Fleet::start(FleetSpec::new(3, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook(" && sleep 1", "batch = [1, 2]"),
    );
    let mut child = work
        .command(&[
            "run",
            "-i",
            "inventory.toml",
            "-p",
            "playbook.toml",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fleetroll run");
    // Kill it as soon as the second batch's step is under way.
    let stdout = child.stdout.take().unwrap();
    let mut done_before_kill = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "host_phase" && event["outcome"] == "updated" {
            done_before_kill.push(event["host"].as_str().unwrap().to_owned());
        }
        if event["event"] == "step_started" && !done_before_kill.is_empty() {
            child.kill().expect("kill -9");
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(done_before_kill, ["web-01"], "the kill came in batch 2");
    let status = status_json(&work);
    assert_eq!(status["outcome"], "interrupted");
    assert_eq!(
        status["hosts"]["web-02"]["drained_from"],
        serde_json::json!(["web"])
    );

    let resume = work.fleetroll(&["resume"]);
    assert_eq!(resume.code, 0, "{}", resume.stderr);
    for host in fleet.hosts() {
        assert_eq!(host.version(), "2.0", "{}", host.name);
    }
    // A host finished before the kill is not updated again; the one whose
    // step was in flight may be.
    assert_eq!(fleet.host("web-01").deploys().len(), 1);
    for host in &fleet.hosts()[2..] {
        assert_eq!(
            host.deploys().len(),
            1,
            "{} deployed more than once",
            host.name
        );
    }
    assert_all_in_service(&fleet, &[]);
    assert_eq!(status_json(&work)["outcome"], "succeeded");
}

#[test]
fn host_keys_are_verified_and_unreachable_hosts_are_untouched() {
    let fleet = Fleet::start(FleetSpec::new(1, 4));
    let options = InventoryOptions {
        wrong_host_key: vec!["web-01".into()],
        unknown_host_key: vec!["web-02".into()],
        dead_port: vec!["web-03".into()],
        ..InventoryOptions::default()
    };
    let work = Workdir::new(
        &fleet,
        &options,
        &playbook("", "batch = [4]\nmax_failed = 4"),
    );
    let run = work.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let status = status_json(&work);
    for host in ["web-01", "web-02", "web-03"] {
        assert_eq!(status["hosts"][host]["outcome"], "unreachable", "{host}");
        assert_eq!(
            fleet.host(host).version(),
            "1.0",
            "{host} must be untouched"
        );
    }
    assert_eq!(status["hosts"]["web-04"]["outcome"], "updated");
    let changed = status["hosts"]["web-01"]["detail"].as_str().unwrap();
    assert!(
        changed.contains("HOST KEY CHANGED") && changed.contains(":1"),
        "{changed}"
    );
    let unknown = status["hosts"]["web-02"]["detail"].as_str().unwrap();
    assert!(
        unknown.contains("not known") && unknown.contains("--accept-new-host-keys"),
        "{unknown}"
    );
    // Unreachable hosts were never drained.
    assert_all_in_service(&fleet, &[]);

    // With accept-new, the unknown key is recorded and the host updated;
    // the changed key is still refused.
    let again = work.run(&["--accept-new-host-keys"]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert_eq!(fleet.host("web-02").version(), "2.0");
    assert_eq!(fleet.host("web-01").version(), "1.0");
}

#[test]
fn one_run_at_a_time_and_a_dead_holders_lock_can_be_broken() {
    let fleet = Fleet::start(FleetSpec::new(1, 1));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook(" && sleep 3", "batch = [1]"),
    );
    // Wait until the first run holds the lock and is working.
    let (mut first, _output) = work.run_until("\"step_started\"");
    let second = work.run(&[]);
    assert_eq!(second.code, 4, "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        second.stderr
    );
    // A live holder's lock is not broken, even with --force.
    assert_eq!(work.fleetroll(&["unlock", "--force"]).code, 4);

    // kill -9 leaves the lock behind; its holder is detected as dead.
    first.kill().unwrap();
    first.wait().unwrap();
    let third = work.run(&[]);
    assert_eq!(third.code, 4);
    assert!(third.stderr.contains("looks dead"), "{}", third.stderr);
    let unlock = work.fleetroll(&["unlock", "--force"]);
    assert_eq!(unlock.code, 0, "{}", unlock.stderr);
    assert!(unlock.stdout.contains("broken"), "{}", unlock.stdout);
    // The journal of the dead run records the broken lock.
    let journals = std::fs::read_dir(work.state().join("runs")).unwrap();
    let text: String = journals
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(text.contains("\"lock_broken\""));
    // And the next run may go.
    assert_ne!(work.run(&[]).code, 4);
}

#[test]
fn an_operator_disabled_server_is_skipped_and_left_disabled() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    fleet.haproxy_command("set server app/web-02 state maint");
    // This test reaches HAProxy's runtime API over TCP instead of the socket.
    let options = InventoryOptions {
        balancer: crate::fixture::BalancerAccess::Tcp,
        ..InventoryOptions::default()
    };
    let work = Workdir::new(&fleet, &options, &playbook("", "batch = [1]"));
    let run = work.run(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let status = status_json(&work);
    assert_eq!(status["hosts"]["web-02"]["outcome"], "skipped");
    assert!(
        status["hosts"]["web-02"]["detail"]
            .as_str()
            .unwrap()
            .contains("maintenance")
    );
    assert_eq!(fleet.host("web-02").version(), "1.0");
    assert_eq!(fleet.server_state("web-02").status, "MAINT");
    assert_eq!(fleet.host("web-01").version(), "2.0");
    assert_eq!(fleet.host("web-03").version(), "2.0");
}

#[test]
fn sigint_finishes_in_flight_hosts_then_exits_130_and_resume_completes() {
    let fleet = Fleet::start(FleetSpec::new(1, 4));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook(" && sleep 1", "batch = [2]"),
    );
    let (mut child, lines) = work.run_until("\"step_started\"");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    // The first batch finished and is back in service; the second never started.
    for host in ["web-01", "web-02"] {
        assert_eq!(fleet.host(host).version(), "2.0", "{host}");
    }
    for host in ["web-03", "web-04"] {
        assert!(
            fleet.host(host).deploys().is_empty(),
            "{host} must not be started"
        );
    }
    assert_all_in_service(&fleet, &[]);
    assert_eq!(status_json(&work)["outcome"], "interrupted");
    let resume = work.fleetroll(&["resume"]);
    assert_eq!(resume.code, 0, "{}", resume.stderr);
    assert!(fleet.hosts().iter().all(|h| h.version() == "2.0"));
    assert!(fleet.hosts().iter().all(|h| h.deploys().len() == 1));
}

#[test]
fn a_new_run_first_returns_hosts_an_interrupted_run_left_drained() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook(" && sleep 2", "batch = [1]"),
    );
    let (mut child, _output) = work.run_until("\"step_started\"");
    child.kill().unwrap();
    child.wait().unwrap();
    // The kill left web-01 drained mid-step.
    assert_ne!(fleet.server_state("web-01").status, "UP");
    // Another run (after the dead holder's lock is broken) puts it back first.
    assert_eq!(work.fleetroll(&["unlock", "--force"]).code, 0);
    let run = work.run(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("this run takes them over and returns them to service first"),
        "{}",
        run.stderr
    );
    assert_all_in_service(&fleet, &[]);
    assert!(fleet.hosts().iter().all(|h| h.version() == "2.0"));
}

#[test]
fn command_balancers_drain_and_undrain_locally_and_over_ssh() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions {
            balancer: crate::fixture::BalancerAccess::None,
            ..InventoryOptions::default()
        },
        &playbook("", "batch = [1]"),
    );
    // Two command balancers: one runs on the host over SSH and writes next
    // to the deploy log; the other runs locally on the controller.
    let path = work.path().join("inventory.toml");
    let inventory = std::fs::read_to_string(&path).unwrap().replacen(
        "balancer = \"none\"",
        "balancer = [\"viassh\", \"local\"]",
        1,
    ) + &format!(
        r#"
[balancers.viassh]
kind = "command"
ssh = true
drain = "echo drain {{host}} >> {{vars.dir}}/runs.log"
undrain = "echo undrain {{host}} >> {{vars.dir}}/runs.log"

[balancers.local]
kind = "command"
drain = "echo drain {{host}} >> {local}"
undrain = "echo undrain {{host}} >> {local}"
"#,
        local = work.path().join("local.log").display()
    );
    std::fs::write(&path, inventory).unwrap();
    let run = work.run(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // On the host: drained before the deploy, returned after it.
    assert_eq!(
        fleet.host("web-01").deploys(),
        ["drain web-01", "deploy 2.0", "undrain web-01"]
    );
    let local = std::fs::read_to_string(work.path().join("local.log")).unwrap();
    assert_eq!(
        local.lines().collect::<Vec<_>>(),
        [
            "drain web-01",
            "undrain web-01",
            "drain web-02",
            "undrain web-02"
        ]
    );
}

/// [`playbook`] without its probe over SSH, which a loaded machine can make
/// miss its per-round bound (see tests/cli/promises.rs); the HTTP and TCP
/// probes prove the new version serves.
pub(crate) fn playbook_without_ssh_probe(extra_step: &str, strategy: &str) -> String {
    let text = playbook(extra_step, strategy);
    let cut = text
        .find("\n[[probes]]\ncommand = ")
        .expect("playbook's command probe");
    text[..=cut].to_owned()
}

/// A command balancer's `status` (exit 2: disabled by an operator) lets
/// fleetroll see an operator's disable, as HAProxy's maint does: the host is
/// skipped, never drained and never returned to service. Exit 1 (out of
/// service) after an undrain is waited for, exit 0 ends the wait.
#[test]
fn a_command_balancer_status_of_2_skips_the_host_and_never_drains_or_undrains_it() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions {
            balancer: crate::fixture::BalancerAccess::None,
            ..InventoryOptions::default()
        },
        &playbook_without_ssh_probe("", "batch = [1]"),
    );
    // The state each balancer keeps: files on the host (over SSH) or in the
    // scratch directory (locally). An operator disabled web-02 in the local
    // balancer and web-03 in the one on the host.
    let local = work.path().join("local");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("web-02.operator"), "").unwrap();
    std::fs::write(fleet.host("web-03").dir.join("operator"), "").unwrap();
    let path = work.path().join("inventory.toml");
    let inventory = std::fs::read_to_string(&path).unwrap().replacen(
        "balancer = \"none\"",
        "balancer = [\"viassh\", \"local\"]",
        1,
    ) + &format!(
        r#"
[balancers.viassh]
kind = "command"
ssh = true
drain = "touch {{vars.dir}}/drained && echo drain {{host}} >> {{vars.dir}}/runs.log"
undrain = "rm {{vars.dir}}/drained && echo undrain {{host}} >> {{vars.dir}}/runs.log"
# Exit 3 (an error) unless it really runs over SSH.
status = "test -n \"$SSH_CONNECTION\" || exit 3; test ! -e {{vars.dir}}/operator || exit 2; test ! -e {{vars.dir}}/drained"

[balancers.local]
kind = "command"
drain = "touch {local}/{{host}}.drained && echo drain {{host}} >> {local}/log"
undrain = "rm {local}/{{host}}.drained && echo undrain {{host}} >> {local}/log"
status = "test ! -e {local}/{{host}}.operator || exit 2; test ! -e {local}/{{host}}.drained"
"#,
        local = local.display()
    );
    std::fs::write(&path, inventory).unwrap();
    let run = work.run(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let status = status_json(&work);
    for (host, balancer) in [("web-02", "local"), ("web-03", "viassh")] {
        assert_eq!(status["hosts"][host]["outcome"], "skipped", "{host}");
        let detail = status["hosts"][host]["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("disabled in balancer {balancer}")),
            "{host}: {detail}"
        );
        // Neither drained nor returned by either balancer, nor deployed.
        assert!(fleet.host(host).deploys().is_empty(), "{host}");
        assert_eq!(fleet.host(host).version(), "1.0", "{host}");
    }
    assert_eq!(
        fleet.host("web-01").deploys(),
        ["drain web-01", "deploy 2.0", "undrain web-01"]
    );
    let log = std::fs::read_to_string(local.join("log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["drain web-01", "undrain web-01"]
    );
    // The operators' disables are still there.
    assert!(local.join("web-02.operator").exists());
    assert!(fleet.host("web-03").dir.join("operator").exists());
}

/// A playbook whose second step reboots, reading the boot id from a file in
/// the host's directory that the "reboot" command may or may not change.
fn reboot_playbook(reboot_command: &str) -> String {
    playbook("", "batch = [1]\nmax_failed = 1").replace(
        "[health]",
        &format!(
            r#"[[steps]]
name = "reboot if required"
reboot = true
only_if = "test -f {{vars.dir}}/reboot-required"
reboot_command = "{reboot_command}"
boot_id_file = "{{vars.dir}}/boot_id"
timeout = "4s"

[health]"#
        ),
    )
}

#[test]
fn a_reboot_is_proven_by_a_new_boot_id_and_an_unchanged_one_fails() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    for host in fleet.hosts() {
        std::fs::write(host.dir.join("boot_id"), "boot-1\n").unwrap();
    }
    // web-01 and web-02 need a reboot; web-03 does not (only_if says no).
    std::fs::write(fleet.host("web-01").dir.join("reboot-required"), "").unwrap();
    std::fs::write(fleet.host("web-02").dir.join("reboot-required"), "").unwrap();
    // The "reboot" changes the boot id on web-01 only; web-02 pretends.
    let command = "if [ {host} = web-01 ]; then echo boot-2 > {vars.dir}/boot_id; fi";
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &reboot_playbook(command),
    );
    let run = work.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let status = status_json(&work);
    assert_eq!(status["hosts"]["web-01"]["outcome"], "updated");
    assert_eq!(
        status["hosts"]["web-02"]["outcome"], "failed",
        "an unchanged boot id is not a reboot"
    );
    assert_eq!(
        status["hosts"]["web-02"]["failed_step"],
        "reboot if required"
    );
    let detail = status["hosts"]["web-02"]["detail"].as_str().unwrap();
    assert!(detail.contains("boot id unchanged"), "{detail}");
    assert_eq!(status["hosts"]["web-03"]["outcome"], "updated");
    assert!(
        run.stderr
            .contains("web-03 step \"reboot if required\" skipped"),
        "{}",
        run.stderr
    );
    // The one that failed stays out of service; the others are back.
    assert_all_in_service(&fleet, &["web-02"]);
}

#[test]
fn a_dry_run_checks_every_host_and_changes_nothing() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    fleet.haproxy_command("set server app/web-03 state maint");
    let options = InventoryOptions {
        unknown_host_key: vec!["web-02".into()],
        ..InventoryOptions::default()
    };
    let work = Workdir::new(&fleet, &options, &playbook("", "batch = [1]"));
    let run = work.run(&["--dry-run"]);
    assert_eq!(
        run.code, 1,
        "web-02's key is unknown:\n{}{}",
        run.stdout, run.stderr
    );
    let line = |host: &str| {
        run.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(host))
            .unwrap_or_else(|| panic!("no line for {host}:\n{}", run.stdout))
            .to_owned()
    };
    assert!(
        line("web-01").contains("ssh ok; skip_if: would update; web: ready, up"),
        "{}",
        line("web-01")
    );
    assert!(line("web-02").contains("not known"), "{}", line("web-02"));
    assert!(
        line("web-03").contains("maintenance (operator: will be skipped)"),
        "{}",
        line("web-03")
    );
    assert!(
        run.stdout.contains("2 of 3 hosts ready to roll"),
        "{}",
        run.stdout
    );
    // Nothing was touched: no deploy, no drain, no journal, no lock.
    assert!(fleet.hosts().iter().all(|h| h.deploys().is_empty()));
    assert_eq!(fleet.server_state("web-01").status, "UP");
    assert_eq!(fleet.server_state("web-03").status, "MAINT");
    assert!(!work.state().exists(), "a dry run writes no state");
}
