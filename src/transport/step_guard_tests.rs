//! The guard's scripts run by this machine's own `sh`, `flock` and
//! `timeout` (util-linux and coreutils, as on the hosts).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::*;

fn run(command: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .expect("run sh")
}

fn guard(dir: &std::path::Path, limit: Duration) -> StepGuard {
    StepGuard::new(dir.join("step.lock").to_str().unwrap(), limit)
}

/// Starts `step` under `guard` and returns once it runs, that is once it
/// holds the lock: synchronised on the step itself, not on a sleep, nor on
/// probing the lock (the guard's own `flock -n` probe holds it for an
/// instant before the step has it).
fn start_holding(guard: &StepGuard, step: &str) -> std::process::Child {
    let running = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&running).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(guard.wrap(&format!("touch {}; {step}", running.display())))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running.exists() {
        assert!(Instant::now() < deadline, "the first step never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(run(&guard.busy_check()).status.code(), Some(1));
    child
}

#[test]
fn a_guarded_step_runs_with_its_own_exit_code_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let guard = guard(dir.path(), Duration::from_secs(30));
    let output = run(&guard.wrap("echo \"it's 'quoted'\"; echo err >&2; exit 3"));
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "it's 'quoted'\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "err\n");
    assert_eq!(guard.verdict(Some(3), Duration::from_secs(1)), Verdict::Ran);
}

#[test]
fn a_second_instance_waits_for_the_first_and_never_overlaps_it() {
    let dir = tempfile::tempdir().unwrap();
    let guard = guard(dir.path(), Duration::from_secs(30));
    let log = dir.path().join("log");
    let step = format!(
        "echo start >>{log}; sleep 1; echo end >>{log}",
        log = log.display()
    );
    let first = start_holding(&guard, &step);
    let second = run(&guard.wrap(&step));
    assert_eq!(second.status.code(), Some(0));
    let mut first = first;
    assert!(first.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "start\nend\nstart\nend\n",
        "the second instance started beside the first"
    );
    assert_eq!(run(&guard.busy_check()).status.code(), Some(0));
}

#[test]
fn a_step_that_finds_the_lock_held_past_its_wait_is_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = guard(dir.path(), Duration::from_secs(30));
    let marker = dir.path().join("ran");
    let held = start_holding(&holder, "sleep 5");
    holder.wait = Duration::from_millis(200);
    let output = run(&holder.wrap(&format!("touch {}", marker.display())));
    assert_eq!(output.status.code(), Some(BUSY_EXIT as i32));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not started beside it"),
        "{output:?}"
    );
    assert!(!marker.exists(), "the step ran beside the first one");
    assert_eq!(
        holder.verdict(Some(BUSY_EXIT), Duration::from_secs(1)),
        Verdict::Busy
    );
    // Stopping ends the holder's whole process group.
    assert_eq!(run(&holder.stop()).status.code(), Some(0));
    let mut held = held;
    let status = held.wait().unwrap();
    assert!(!status.success(), "the stopped step exited {status}");
}

/// A waiter whose controller died (sshd closed its output pipes) must not
/// start the step once the earlier instance ends: nobody would wait for it
/// and its host may be back in service by then.
#[test]
fn a_waiting_step_whose_controller_is_gone_never_starts() {
    let dir = tempfile::tempdir().unwrap();
    let guard = guard(dir.path(), Duration::from_secs(30));
    let marker = dir.path().join("ran");
    // The first step holds the lock until the test lets it go: whatever
    // the machine's load, the second one finds it held and waits.
    let release = dir.path().join("release");
    let first = start_holding(
        &guard,
        &format!("while [ ! -e {} ]; do sleep 0.05; done", release.display()),
    );
    let mut waiter = Command::new("sh")
        .arg("-c")
        .arg(guard.wrap(&format!("touch {}", marker.display())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Synchronise on the waiter's own word that it found the lock held and
    // waits (a process list would also match the waiter's outer shell,
    // whose arguments hold the same words, before it looked at the lock).
    let mut stderr = std::io::BufReader::new(waiter.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(
        line.contains("still runs on this host; waiting for it"),
        "the second step never waited: {line:?}"
    );
    // The controller is gone: nothing reads the waiter's stderr any more.
    drop(stderr);
    std::fs::write(&release, "").unwrap();
    let mut first = first;
    assert!(first.wait().unwrap().success());
    let status = waiter.wait().unwrap();
    assert!(!status.success(), "the waiter exited {status}");
    assert!(!marker.exists(), "the waiter started the step for nobody");
    assert_eq!(run(&guard.busy_check()).status.code(), Some(0));
}

#[test]
fn a_step_past_its_timeout_is_stopped_on_the_host_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let guard = guard(dir.path(), Duration::from_millis(300));
    let late = dir.path().join("late");
    let started = Instant::now();
    let output = run(&guard.wrap(&format!(
        "(sleep 2; touch {late}) & sleep 2; touch {late}",
        late = late.display()
    )));
    let ran_for = started.elapsed();
    let code = output.status.code().map(|c| c as u32);
    assert_eq!(code, Some(124), "{output:?}");
    assert_eq!(guard.verdict(code, ran_for), Verdict::TimedOut);
    // Past the step's own and its background child's end: neither ran on.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !late.exists(),
        "a process of the timed-out step kept running"
    );
    assert_eq!(run(&guard.busy_check()).status.code(), Some(0));
}

/// A step that reaches the host after its controller's lease ended (the
/// controller was frozen between deciding and sending) never starts.
#[test]
fn a_step_past_its_controllers_lease_is_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let mut guard = guard(dir.path(), Duration::from_secs(5));
    let marker = dir.path().join("ran");
    let now = jiff::Timestamp::now().as_second();
    guard.not_after = Some(now - 5);
    let late = run(&guard.wrap(&format!("touch {}", marker.display())));
    assert_eq!(late.status.code(), Some(LATE_EXIT as i32), "{late:?}");
    assert!(!marker.exists(), "the late step ran");
    assert_eq!(
        guard.verdict(Some(LATE_EXIT), Duration::ZERO),
        Verdict::Late
    );
    guard.not_after = Some(now + 60);
    let in_time = run(&guard.wrap(&format!("touch {}", marker.display())));
    assert_eq!(in_time.status.code(), Some(0), "{in_time:?}");
    assert!(marker.exists());
}

#[test]
fn stop_does_nothing_when_no_step_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let guard = guard(dir.path(), Duration::from_secs(5));
    // A stale process group id from a step long over.
    std::fs::write(&guard.lock, "1\n").unwrap();
    assert_eq!(run(&guard.stop()).status.code(), Some(0));
}

#[test]
fn parse_reads_back_what_wrap_wrote() {
    let guard = StepGuard::new("/tmp/a lock", Duration::from_millis(1500));
    let step = "deploy '2.0' && echo \"$HOME\"";
    let parsed = parse(&guard.wrap(step)).expect("a guarded command");
    assert_eq!(
        parsed,
        Guarded {
            lock: "/tmp/a lock".to_owned(),
            wait: guard.wait,
            limit: Duration::from_millis(1500),
            step: step.to_owned(),
        }
    );
    assert_eq!(parse("deploy 2.0"), None);
    assert_eq!(
        parse_query(&guard.busy_check()),
        Some(Query::Busy {
            lock: "/tmp/a lock".to_owned()
        })
    );
    assert_eq!(
        parse_query(&guard.stop()),
        Some(Query::Stop {
            lock: "/tmp/a lock".to_owned()
        })
    );
    assert_eq!(parse("sh -c 'echo hi' fleetroll-step a 1 1 1 x"), None);
}
