//! The SPEC's promises that issue 8 reports broken, over real sshd hosts
//! behind a real HAProxy: rollback when failed hosts fill `max_unavailable`,
//! `resume` after the window closed, the lock's heartbeat during a pause,
//! and drains that survive a balancer fault or an earlier run.
//!
//! Each test is written to what SPEC.md promises. Tests act on the run's
//! `--json` events and poll real state with a deadline; the one fixed sleep
//! is the length of an injected balancer outage.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::{Fleet, FleetSpec, InventoryOptions, http_get};
use crate::rollout::{Workdir, assert_all_in_service, playbook, status_json};
use crate::unattended::{WINDOW, at, rollback_playbook};

pub(crate) const RUN_JSON: &[&str] = &[
    "run",
    "-i",
    "inventory.toml",
    "-p",
    "playbook.toml",
    "--json",
];

/// How long a run may take to reach an awaited event on a busy machine.
pub(crate) const EVENT_WITHIN: Duration = Duration::from_secs(60);

/// `fleetroll … --json` running in the background. Its events arrive through
/// a reader thread, so every wait on them has a deadline. Killed on drop if
/// it still runs (a failing test leaves no controller behind).
pub(crate) struct Live {
    child: Child,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    stderr: PathBuf,
}

/// How a background run ended.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) code: i32,
    pub(crate) events: Vec<Value>,
    pub(crate) stderr: String,
}

impl Live {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `command` (which must ask for `--json`), stderr to `stderr`.
    pub(crate) fn start(mut command: Command, stderr: PathBuf) -> Live {
        let log = File::create(&stderr).expect("create the stderr log");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start fleetroll");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Live {
            child,
            events,
            seen: Vec::new(),
            stderr,
        }
    }

    pub(crate) fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Returns the first event `wanted` accepts; panics when the run ends or
    /// `within` passes first.
    pub(crate) fn until(
        &mut self,
        what: &str,
        within: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if wanted(&event) {
                        return event;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no event {what} within {within:?}; events:\n{}\nstderr:\n{}",
                    lines(&self.seen),
                    self.stderr_text()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait();
                    panic!(
                        "fleetroll ended ({status:?}) before event {what}; events:\n{}\nstderr:\n{}",
                        lines(&self.seen),
                        self.stderr_text()
                    )
                }
            }
        }
    }

    /// kill -9; reaps it and reads what it printed before it died.
    pub(crate) fn kill_9(&mut self) {
        self.child.kill().expect("kill -9 fleetroll");
        self.child.wait().expect("reap fleetroll");
        while let Ok(event) = self.events.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(event);
        }
    }

    /// SIGINT, as an operator's Ctrl-C.
    fn interrupt(&self) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("a valid pid");
        rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("send SIGINT");
    }

    /// Reads the rest of the events and waits for the exit, `within` in all.
    pub(crate) fn finish(mut self, within: Duration) -> Ended {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.seen.push(event),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "fleetroll did not end within {within:?}; events:\n{}\nstderr:\n{}",
                    lines(&self.seen),
                    self.stderr_text()
                ),
            }
        }
        // Stdout is closed: the process is exiting; reap it, bounded.
        let status = poll(deadline.saturating_duration_since(Instant::now()), || {
            self.child.try_wait().expect("wait for fleetroll")
        })
        .unwrap_or_else(|| panic!("fleetroll closed its stdout but did not exit"));
        Ended {
            code: status.code().unwrap_or(-1),
            events: std::mem::take(&mut self.seen),
            stderr: self.stderr_text(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Calls `probe` every 20 ms until it returns `Some`, for at most `within`.
pub(crate) fn poll<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `body` while a thread samples HAProxy's `show stat` every 20 ms;
/// returns what `body` returned and the most servers seen out of service
/// at once.
pub(crate) fn watching_out_of_service<T>(fleet: &Fleet, body: impl FnOnce() -> T) -> (T, usize) {
    let stop = AtomicBool::new(false);
    let peak = AtomicUsize::new(0);
    let value = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let out = fleet
                    .server_states()
                    .iter()
                    .filter(|s| !s.status.starts_with("UP"))
                    .count();
                peak.fetch_max(out, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Stops the sampler even when `body` panics: the scope would wait
        // for it forever.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        body()
    });
    (value, peak.load(Ordering::Relaxed))
}

pub(crate) fn signal(pid: u32, signal: rustix::process::Signal) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("a valid pid");
    rustix::process::kill_process(pid, signal).expect("send a signal");
}

fn lines(events: &[Value]) -> String {
    events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Accepts `host_phase` events of `host` entering `phase`.
pub(crate) fn phase<'a>(host: &'a str, phase: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e| e["event"] == "host_phase" && e["host"] == host && e["phase"] == phase
}

/// The heartbeat of the (only) lock in the state directory, if one is held.
fn lock_heartbeat(work: &Workdir) -> Option<jiff::Timestamp> {
    let entry = std::fs::read_dir(work.state().join("locks"))
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "lock"))?;
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(entry.path()).ok()?).ok()?;
    lock["heartbeat"].as_str()?.parse().ok()
}

/// HAProxy's runtime API socket renamed away: connecting by its path fails
/// (ENOENT) while HAProxy keeps serving and checking. As root, a chmod would
/// not keep us out. Moved back by [`SocketOutage::end`] or on drop.
struct SocketOutage {
    socket: PathBuf,
    away: PathBuf,
    active: bool,
}

impl SocketOutage {
    fn begin(socket: &Path) -> SocketOutage {
        let away = socket.with_extension("sock.away");
        std::fs::rename(socket, &away).expect("move the runtime API socket away");
        SocketOutage {
            socket: socket.to_path_buf(),
            away,
            active: true,
        }
    }

    fn end(&mut self) {
        if std::mem::take(&mut self.active) {
            std::fs::rename(&self.away, &self.socket).expect("put the runtime API socket back");
        }
    }
}

impl Drop for SocketOutage {
    fn drop(&mut self) {
        self.end();
    }
}

/// [`playbook`] without its probe over SSH. At this health interval each
/// probe round is bounded at 500 ms, which an SSH exec can exceed on a loaded
/// machine (the unhealthy host would then be the machine's fault, not the
/// code's); the HTTP and TCP probes prove the new version serves.
fn http_probed_playbook(extra_step: &str, strategy: &str) -> String {
    let text = playbook(extra_step, strategy);
    let cut = text
        .find("\n[[probes]]\ncommand = ")
        .expect("rollout::playbook's command probe");
    text[..=cut].to_owned()
}

/// SPEC, `on_failure = "rollback"`: "roll back the failed batch's hosts,
/// then halt". A host that failed and stays drained holds the only slot
/// `max_unavailable = 1` allows; rolling it back takes no further host out,
/// so it must not be refused for lack of room.
#[test]
fn on_failure_rollback_rolls_back_a_failed_host_holding_the_only_unavailable_slot() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &rollback_playbook("batch = [1]\nmax_unavailable = 1\non_failure = \"rollback\""),
    );
    let run = work.run(&["--json"]);
    assert_eq!(run.code, 1, "a rolled-back run exits 1:\n{}", run.stderr);
    // web-02's new version is broken: its batch is rolled back.
    assert_eq!(
        fleet.host("web-02").deploys(),
        ["deploy 2.0", "deploy 1.0"],
        "the [[rollback]] step must run on web-02, the failed batch's host; stderr:\n{}",
        run.stderr
    );
    assert_eq!(fleet.host("web-02").version(), "1.0");
    assert_all_in_service(&fleet, &[]);
    // Only the failed batch is rolled back; later batches never start.
    assert_eq!(fleet.host("web-01").version(), "2.0");
    assert!(
        fleet.host("web-03").deploys().is_empty(),
        "web-03 untouched"
    );
    let rolled: Vec<String> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "host_phase" && e["phase"] == "rolled_back")
        .filter_map(|e| e["host"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(rolled, ["web-02"], "host_phase rolled_back events");
    let status = status_json(&work);
    assert_eq!(status["outcome"], "rolled_back");
    assert_eq!(status["hosts"]["web-02"]["outcome"], "rolled_back");
    assert_eq!(status["hosts"]["web-02"]["drained_from"], json!([]));
}

/// SPEC, `fleetroll rollback RUN_ID`: "run the playbook's rollback steps on
/// the hosts that run changed, in reverse batch order, with the same
/// drain/probe discipline". The run halted with web-02 failed and kept out,
/// which fills `max_unavailable = 1`; its rollback must still run.
#[test]
fn rollback_command_rolls_back_a_halted_run_whose_failed_host_fills_max_unavailable() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &rollback_playbook("batch = [1]\nmax_unavailable = 1"),
    );
    let run = work.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let status = status_json(&work);
    assert_eq!(status["outcome"], "halted");
    assert_eq!(status["hosts"]["web-02"]["outcome"], "unhealthy");
    assert_ne!(
        fleet.server_state("web-02").status,
        "UP",
        "web-02 failed its probes and is kept out"
    );
    let run_id = status["run_id"].as_str().expect("a run id").to_owned();

    let rollback = work.fleetroll(&["rollback", &run_id]);
    assert_eq!(
        rollback.code, 0,
        "the rollback of web-02 and web-01 must run and succeed:\n{}",
        rollback.stderr
    );
    for host in ["web-01", "web-02"] {
        assert_eq!(
            fleet.host(host).deploys(),
            ["deploy 2.0", "deploy 1.0"],
            "{host}"
        );
        assert_eq!(fleet.host(host).version(), "1.0", "{host}");
    }
    assert!(
        fleet.host("web-03").deploys().is_empty(),
        "web-03 untouched"
    );
    assert_all_in_service(&fleet, &[]);
    let status = status_json(&work);
    assert_eq!(status["outcome"], "rolled_back");
    for host in ["web-01", "web-02"] {
        assert_eq!(status["hosts"][host]["outcome"], "rolled_back", "{host}");
        assert_eq!(status["hosts"][host]["drained_from"], json!([]), "{host}");
    }
}

/// SPEC: if a run "is interrupted or killed, the next run, resume or
/// rollback returns every drained host to service before anything else".
/// A `resume` that finds the window closed exits 3, but only after that:
/// the host the kill left drained (healthy on the new version) goes back.
#[test]
fn resume_after_the_window_closed_still_returns_the_host_a_kill_left_drained() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    // The step deploys, then sleeps: a kill during the sleep leaves web-01
    // drained mid-step, already healthy on 2.0.
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &(http_probed_playbook(" && sleep 10", "batch = [1]") + WINDOW),
    );
    let mut command = work.command(RUN_JSON);
    command.env("FLEETROLL_FAKE_NOW", "2026-11-28T02:00:05Z");
    let mut run = Live::start(command, work.path().join("run.stderr"));
    run.until("step_started on web-01", EVENT_WITHIN, |e| {
        e["event"] == "step_started" && e["host"] == "web-01"
    });
    // Kill it once the deploy is done and only the sleep is left: web-01
    // serves 2.0, and HAProxy's own checks pass on it again (drained: DRAIN).
    let web01 = fleet.host("web-01");
    let deployed = poll(Duration::from_secs(30), || {
        let answer = http_get(web01.app_address(), "/healthz", Duration::from_secs(1)).ok()?;
        (web01.deploys() == ["deploy 2.0"]
            && answer.status == 200
            && answer.body.trim() == "2.0"
            && fleet.server_state("web-01").status == "DRAIN")
            .then_some(())
    });
    assert!(
        deployed.is_some(),
        "web-01's deploy did not finish: {:?}\n{}",
        fleet.server_state("web-01"),
        fleet.logs()
    );
    run.kill_9();
    assert!(
        !run.seen.iter().any(|e| e["event"] == "step_finished"),
        "the kill came after the step: {}",
        lines(&run.seen)
    );
    let status = status_json(&work);
    assert_eq!(status["outcome"], "interrupted");
    assert_eq!(status["hosts"]["web-01"]["drained_from"], json!(["web"]));

    // Half an hour after the window closed.
    let resume = at(&work, "2026-11-28T05:30:00Z", &["resume"]);
    assert_eq!(
        resume.code, 3,
        "the window is closed: exit 3\n{}",
        resume.stderr
    );
    assert_all_in_service(&fleet, &[]);
    assert_eq!(fleet.host("web-01").version(), "2.0");
    for host in ["web-02", "web-03"] {
        assert!(
            fleet.host(host).deploys().is_empty(),
            "{host} never started must stay untouched"
        );
    }
    let status = status_json(&work);
    assert_eq!(
        status["hosts"]["web-01"]["drained_from"],
        json!([]),
        "the journal must record web-01's return: {}",
        status["hosts"]["web-01"]
    );
}

/// SPEC: "The lock records host, pid, run id and a heartbeat; a holder that
/// died is detected (... an expired heartbeat)". The holder refreshes it
/// every 10 s (`HEARTBEAT_EVERY`) and is presumed dead after 90 s, so a
/// live run must keep beating through a 100 s pause between batches.
#[test]
fn the_lock_heartbeat_keeps_beating_through_a_long_pause_between_batches() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &http_probed_playbook("", "batch = [1]\npause = \"100s\""),
    );
    let mut run = Live::start(work.command(RUN_JSON), work.path().join("run.stderr"));
    let pause = run.until("pause", EVENT_WITHIN, |e| e["event"] == "pause");
    let paused_at: jiff::Timestamp = pause["ts"]
        .as_str()
        .and_then(|ts| ts.parse().ok())
        .expect("the pause event has an RFC 3339 ts");
    let before = lock_heartbeat(&work).expect("the run holds the lock");
    // Two and a half heartbeat intervals: at least one beat must land.
    let beat = poll(Duration::from_secs(25), || {
        lock_heartbeat(&work).filter(|h| *h > paused_at)
    });
    run.interrupt();
    let ended = run.finish(Duration::from_secs(30));
    eprintln!(
        "--- run after SIGINT (exit {}):\n{}",
        ended.code, ended.stderr
    );
    assert!(
        beat.is_some(),
        "the lock's heartbeat was not refreshed during 25 s of the 100 s pause: it still says {before}, \
         the pause began at {paused_at}; after 90 s the live holder would look dead to `unlock --force`"
    );
    assert_eq!(
        ended.code,
        130,
        "SIGINT during the pause stops the run cleanly:\n{}\n{}",
        lines(&ended.events),
        ended.stderr
    );
    assert_eq!(fleet.host("web-01").version(), "2.0");
    assert!(fleet.host("web-02").deploys().is_empty());
    assert_all_in_service(&fleet, &[]);
}

/// SPEC: "A transient balancer or cloud error is retried before a host is
/// given up." HAProxy's runtime API disappears while web-01 passes its
/// probes (which do not use it) and stays away for 3 s after web-01 starts
/// being returned: the return must be retried, not the host failed.
#[test]
fn a_short_balancer_outage_while_returning_a_healthy_host_is_retried() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &http_probed_playbook("", "batch = [1]"),
    );
    let mut run = Live::start(work.command(RUN_JSON), work.path().join("run.stderr"));
    run.until(
        "web-01 verifying",
        EVENT_WITHIN,
        phase("web-01", "verifying"),
    );
    let mut outage = SocketOutage::begin(fleet.haproxy_socket());
    run.until(
        "web-01 undraining",
        EVENT_WITHIN,
        phase("web-01", "undraining"),
    );
    // The outage's length, not a wait for anything.
    std::thread::sleep(Duration::from_secs(3));
    outage.end();
    let ended = run.finish(Duration::from_secs(120));
    eprintln!("--- run (exit {}):\n{}", ended.code, ended.stderr);
    let status = status_json(&work);
    assert_eq!(
        status["hosts"]["web-01"]["outcome"], "updated",
        "web-01 passed its probes; a 3 s balancer outage must not fail it: {}",
        status["hosts"]["web-01"]
    );
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert_all_in_service(&fleet, &[]);
    assert!(fleet.hosts().iter().all(|h| h.version() == "2.0"));
    assert_eq!(status["outcome"], "succeeded");
}

/// A playbook whose deploy step fails with exit 7, before changing
/// anything, on a host whose directory holds a file `FAULT`.
fn faulty_step_playbook() -> String {
    let text = http_probed_playbook("", "batch = [1]").replacen(
        "run = \"{vars.appctl}",
        "run = \"if [ -e {vars.dir}/FAULT ]; then echo disk full >&2; exit 7; fi && {vars.appctl}",
        1,
    );
    assert!(text.contains("FAULT"), "the deploy step was not found");
    text
}

/// SPEC: "A drain that fleetroll recorded is fleetroll's: a later run,
/// resume or rollback returns it (or reports the host failed and kept out
/// on purpose); it is never taken for an operator's and never reported as
/// 'skipped'." web-01's step failed and the run kept it drained; with the
/// fault fixed, the next run finishes it.
#[test]
fn a_drain_left_by_a_failed_run_is_finished_by_the_next_run_not_skipped_as_an_operators() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let fault = fleet.host("web-01").dir.join("FAULT");
    std::fs::write(&fault, "").expect("plant the fault");
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &faulty_step_playbook(),
    );
    let first = work.run(&[]);
    assert_eq!(first.code, 1, "{}", first.stderr);
    let status = status_json(&work);
    let first_run = status["run_id"].clone();
    assert_eq!(status["hosts"]["web-01"]["outcome"], "failed");
    assert_eq!(status["hosts"]["web-01"]["drained_from"], json!(["web"]));
    assert_eq!(fleet.server_state("web-01").status, "DRAIN");

    std::fs::remove_file(&fault).expect("fix the fault");
    let second = work.run(&[]);
    let status = status_json(&work);
    assert_ne!(status["run_id"], first_run, "status shows the second run");
    let web01 = &status["hosts"]["web-01"];
    assert_ne!(
        web01["outcome"], "skipped",
        "fleetroll's own drain from the run before was taken for an operator's: {web01}"
    );
    assert_eq!(web01["outcome"], "updated", "{web01}");
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(fleet.host("web-01").version(), "2.0");
    assert_all_in_service(&fleet, &[]);
}

/// The same promise when the earlier run had already changed the host:
/// web-01 was deployed, failed its probes and was kept drained. Once it is
/// healthy, the next run must return it, not skip it as "already done"
/// (`skip_if`) and leave it out of service.
#[test]
fn a_host_a_run_left_drained_and_unhealthy_is_returned_by_the_next_run_not_skipped() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let dir = fleet.host("web-01").dir.clone();
    std::fs::write(dir.join("FAULT"), "").expect("plant the fault");
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &http_probed_playbook(
            " && if [ -e {vars.dir}/FAULT ]; then touch {vars.dir}/BROKEN; fi",
            "batch = [1]",
        )
        .replace("timeout = \"8s\"", "timeout = \"2s\""),
    );
    let first = work.run(&[]);
    assert_eq!(first.code, 1, "{}", first.stderr);
    let status = status_json(&work);
    let first_run = status["run_id"].clone();
    assert_eq!(status["hosts"]["web-01"]["outcome"], "unhealthy");
    assert_eq!(status["hosts"]["web-01"]["drained_from"], json!(["web"]));
    assert_ne!(fleet.server_state("web-01").status, "UP");

    // Fixed by hand: web-01 serves 2.0 and is healthy, still drained.
    std::fs::remove_file(dir.join("FAULT")).expect("fix the fault");
    std::fs::remove_file(dir.join("BROKEN")).expect("fix the app");
    let second = work.run(&[]);
    let status = status_json(&work);
    assert_ne!(status["run_id"], first_run, "status shows the second run");
    let web01 = &status["hosts"]["web-01"];
    assert_ne!(
        web01["outcome"],
        "skipped",
        "a host fleetroll drained was skipped and left out: {web01}; HAProxy: {:?}",
        fleet.server_state("web-01")
    );
    assert_eq!(web01["outcome"], "updated", "{web01}");
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_all_in_service(&fleet, &[]);
}
