//! Where a run's lock and journals live: the inventory's `[state]`, shared by
//! every command of that inventory whatever its working directory; runs found
//! from `-i INV`; a journal's playbook fingerprint.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::fixture::{Fleet, FleetSpec, InventoryOptions};
use crate::http_stub::closed_port;
use crate::rollout::{Workdir, assert_all_in_service, output, playbook};
use crate::support::Output;

/// `fleetroll ARGS` started in `cwd`, with no `--state-dir`: the state is
/// wherever the inventory says.
fn fleetroll_in(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetroll"));
    command
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    command
}

fn run_in(cwd: &Path, args: &[&str]) -> Output {
    output(fleetroll_in(cwd, args))
}

/// `fleetroll ARGS --json` started in `cwd`, once its first step started:
/// the process, the rest of its events, and its run id.
fn run_until_a_step(
    cwd: &Path,
    args: &[&str],
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
    String,
) {
    let mut run = fleetroll_in(cwd, &[args, &["--json"]].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the run");
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    let run_id = loop {
        let line = lines
            .next()
            .expect("the run ended before its step")
            .unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "step_started" {
            break event["run_id"].as_str().unwrap().to_owned();
        }
    };
    (run, lines, run_id)
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

fn journals(state: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(state.join("runs")) else {
        return Vec::new();
    };
    entries.map(|e| e.unwrap().path()).collect()
}

/// SPEC, Promises: "One run at a time per inventory, wherever and by whomever
/// fleetroll is started (any working directory)". Regression: the state
/// directory defaulted to `.fleetroll` in the working directory, so cron in
/// `/` and an operator in their home directory each took a lock of their own.
#[test]
fn runs_started_in_different_working_directories_share_the_inventorys_lock() {
    let fleet = Fleet::start(FleetSpec::new(1, 1));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook(" && sleep 3", "batch = [1]"),
    );
    let inventory = text(&work.path().join("inventory.toml"));
    let playbook = text(&work.path().join("playbook.toml"));
    let cron_cwd = tempfile::tempdir().unwrap();
    let operator_cwd = tempfile::tempdir().unwrap();
    let run = ["run", "-i", &inventory, "-p", &playbook];

    let (mut first, lines, run_id) = run_until_a_step(cron_cwd.path(), &run);

    let second = run_in(operator_cwd.path(), &run);
    assert_eq!(second.code, 4, "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!("pid {}", first.id())) && second.stderr.contains(&run_id),
        "{}",
        second.stderr
    );
    // Every other command finds the run from the inventory too.
    let unlock = run_in(operator_cwd.path(), &["unlock", "-i", &inventory]);
    assert_eq!(unlock.code, 0, "{}", unlock.stderr);
    assert!(
        unlock.stdout.contains(&run_id) && unlock.stdout.contains("(alive)"),
        "{}",
        unlock.stdout
    );
    let status = run_in(operator_cwd.path(), &["status", "-i", &inventory, "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["run_id"], run_id.as_str());
    assert_eq!(status["outcome"], "running");

    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(first.wait().unwrap().code(), Some(0), "{rest:?}");
    // The default state directory sits next to the inventory, and nothing
    // was written where the commands were started.
    assert_eq!(journals(&work.path().join(".fleetroll")).len(), 1);
    for cwd in [cron_cwd.path(), operator_cwd.path()] {
        assert!(std::fs::read_dir(cwd).unwrap().next().is_none());
    }
    assert_all_in_service(&fleet, &[]);
}

/// Issue 17: the inventory's lock is named after its path and state
/// directory, so a copy of the inventory (another checkout) or another
/// `--state-dir` used to get a lock of its own and drive the same hosts at
/// once. Now the fleet's lock on this machine turns both away with exit 4,
/// naming the run that drives the hosts, and touches nothing.
#[test]
fn a_copy_of_the_inventory_or_another_state_dir_never_runs_beside_it() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook(" && sleep 3", "batch = [1]"),
    );
    let inventory = text(&work.path().join("inventory.toml"));
    let playbook_path = text(&work.path().join("playbook.toml"));
    let checkout = tempfile::tempdir().unwrap();
    for file in ["inventory.toml", "playbook.toml"] {
        std::fs::copy(work.path().join(file), checkout.path().join(file)).unwrap();
    }
    let (mut first, lines, run_id) = run_until_a_step(
        work.path(),
        &["run", "-i", &inventory, "-p", &playbook_path],
    );
    let other_state = tempfile::tempdir().unwrap();
    let copy = run_in(
        checkout.path(),
        &["run", "-i", "inventory.toml", "-p", "playbook.toml"],
    );
    let elsewhere = run_in(
        work.path(),
        &[
            "run",
            "-i",
            &inventory,
            "-p",
            &playbook_path,
            "--state-dir",
            &text(other_state.path()),
        ],
    );
    for (what, second) in [("a copy", &copy), ("another state dir", &elsewhere)] {
        assert_eq!(second.code, 4, "{what}: {}", second.stderr);
        assert!(
            second
                .stderr
                .contains("these hosts are being driven by run")
                && second.stderr.contains(&run_id)
                && second.stderr.contains(&format!("pid {}", first.id())),
            "{what}: {}",
            second.stderr
        );
    }
    assert!(journals(&checkout.path().join(".fleetroll")).is_empty());
    assert!(journals(other_state.path()).is_empty());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(first.wait().unwrap().code(), Some(0), "{rest:?}");
    for host in fleet.hosts() {
        assert_eq!(host.deploys().len(), 1, "{} deployed once", host.name);
    }
    assert_all_in_service(&fleet, &[]);
    // Once the run ended, the copy may run.
    let after = run_in(
        checkout.path(),
        &["run", "-i", "inventory.toml", "-p", "playbook.toml"],
    );
    assert_eq!(after.code, 0, "{}", after.stderr);
}

/// A one-host inventory whose host refuses SSH connections, with `state`
/// as its `[state]` table, and a playbook for it.
fn unreachable_fleet(dir: &Path, state: &str) -> (String, String) {
    let address = closed_port();
    let inventory = dir.join("inventory.toml");
    std::fs::write(
        &inventory,
        format!(
            "{state}\n[zones.a]\nhosts = [{{ name = \"h1\", address = \"{}\", port = {} }}]\n",
            address.ip(),
            address.port()
        ),
    )
    .unwrap();
    let playbook = dir.join("playbook.toml");
    std::fs::write(
        &playbook,
        "name = \"p\"\n\n[[steps]]\nname = \"s\"\nrun = \"true\"\n\n[[probes]]\ntcp = \"{address}:22\"\n",
    )
    .unwrap();
    (text(&inventory), text(&playbook))
}

/// SPEC, State: `local` "keeps them in a directory relative to the
/// inventory file"; `--state-dir` overrides it.
#[test]
fn the_state_table_puts_lock_and_journals_relative_to_the_inventory() {
    let files = tempfile::tempdir().unwrap();
    let (inventory, playbook) = unreachable_fleet(
        files.path(),
        "[state]\nbackend = \"local\"\ndir = \"var/fleetroll\"\n",
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let validate = run_in(
        elsewhere.path(),
        &["validate", "-i", &inventory, "-p", &playbook],
    );
    assert_eq!(validate.code, 0, "{}", validate.stderr);

    let run = run_in(
        elsewhere.path(),
        &["run", "-i", &inventory, "-p", &playbook],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let state = files.path().join("var/fleetroll");
    assert_eq!(journals(&state).len(), 1, "{}", run.stderr);
    assert!(
        std::fs::read_dir(elsewhere.path())
            .unwrap()
            .next()
            .is_none()
    );
    let status = run_in(files.path(), &["status", "-i", &inventory, "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["hosts"]["h1"]["outcome"], "unreachable");

    // --state-dir still wins over the inventory.
    let override_dir = elsewhere.path().join("override");
    let run = run_in(
        elsewhere.path(),
        &[
            "run",
            "-i",
            &inventory,
            "-p",
            &playbook,
            "--state-dir",
            &text(&override_dir),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(journals(&override_dir).len(), 1);
    assert_eq!(journals(&state).len(), 1);
}

#[test]
fn a_misspelt_state_key_is_refused_with_its_position() {
    let files = tempfile::tempdir().unwrap();
    let (inventory, playbook) = unreachable_fleet(files.path(), "[state]\ndirectory = \"x\"\n");
    let validate = run_in(
        files.path(),
        &["validate", "-i", &inventory, "-p", &playbook],
    );
    assert_eq!(validate.code, 2, "{}", validate.stderr);
    assert!(
        validate.stderr.contains("unknown field `directory`")
            && validate.stderr.contains("inventory.toml:2:1"),
        "{}",
        validate.stderr
    );
}

/// `backend = "s3"` validates without a word; `--state-dir` cannot stand
/// in for the bucket (every other controller looks there), so the commands
/// given one refuse, touching nothing. (The S3 state itself is tested
/// against moto_server in `s3_state.rs`.)
#[test]
fn s3_state_validates_and_a_state_dir_cannot_replace_it() {
    let files = tempfile::tempdir().unwrap();
    let (inventory, playbook) = unreachable_fleet(
        files.path(),
        "[state]\nbackend = \"s3\"\nbucket = \"ops-fleetroll\"\nprefix = \"web/\"\nregion = \"eu-west-1\"\n",
    );
    let validate = run_in(
        files.path(),
        &["validate", "-i", &inventory, "-p", &playbook],
    );
    assert_eq!(validate.code, 0, "{}", validate.stderr);
    assert!(!validate.stderr.contains("warning"), "{}", validate.stderr);
    let elsewhere = text(&files.path().join("elsewhere"));
    for args in [
        &[
            "run",
            "-i",
            &inventory,
            "-p",
            &playbook,
            "--state-dir",
            &elsewhere,
        ][..],
        &["resume", "-i", &inventory, "--state-dir", &elsewhere],
        &["status", "-i", &inventory, "--state-dir", &elsewhere],
        &[
            "unlock",
            "-i",
            &inventory,
            "--force",
            "--state-dir",
            &elsewhere,
        ],
    ] {
        let refused = run_in(files.path(), args);
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.stderr);
        // The message is wrapped to the terminal's width.
        let words: Vec<&str> = refused
            .stderr
            .split_whitespace()
            .filter(|w| *w != "│")
            .collect();
        assert!(
            words
                .join(" ")
                .contains("would hide them from every other controller"),
            "{args:?}: {}",
            refused.stderr
        );
    }
    let names: Vec<String> = std::fs::read_dir(files.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "nothing but the two files: {names:?}");
}

/// A journal holding only the start record of `run_id`, of `inventory`.
fn started_run(state: &Path, run_id: &str, inventory: &Path) {
    let settings = serde_json::json!({
        "inventory": text(&std::fs::canonicalize(inventory).unwrap()),
        "playbook": "/nowhere/playbook.toml",
        "var_names": [],
        "limit": [],
        "accept_new_host_keys": false,
    });
    let record = serde_json::json!({
        "ts": "2026-01-01T00:00:00Z",
        "run_id": run_id,
        "event": "run_started",
        "playbook": "p",
        "hosts": 0,
        "batches": 0,
        "failure_budget": 0,
        "settings": settings,
        "plan": [],
    });
    std::fs::create_dir_all(state.join("runs")).unwrap();
    std::fs::write(
        state.join("runs").join(format!("{run_id}.jsonl")),
        format!("{record}\n"),
    )
    .unwrap();
}

/// SPEC: `resume`/`status` "find runs from -i INV", the latest when no id
/// is given. Regression: the latest run of any inventory in the state
/// directory was taken, so in a shared `--state-dir` a `resume` could pick
/// another fleet's run.
#[test]
fn status_shows_the_newest_run_of_its_inventory_in_a_shared_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("shared");
    let web = dir.path().join("web.toml");
    let db = dir.path().join("db.toml");
    std::fs::write(&web, "").unwrap();
    std::fs::write(&db, "").unwrap();
    started_run(&state, "20260101T000000Z-0001", &web);
    started_run(&state, "20260102T000000Z-0001", &db);
    let shared = text(&state);
    let status = |args: &[&str]| {
        let out = run_in(
            dir.path(),
            &[&["status", "--json", "--state-dir", &shared][..], args].concat(),
        );
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        value["run_id"].as_str().unwrap().to_owned()
    };
    assert_eq!(status(&["-i", "web.toml"]), "20260101T000000Z-0001");
    assert_eq!(status(&["-i", "db.toml"]), "20260102T000000Z-0001");
    // Without -i, the state directory's newest run, as before.
    assert_eq!(status(&[]), "20260102T000000Z-0001");

    // A run of another inventory is refused by name.
    let other = run_in(
        dir.path(),
        &[
            "status",
            "20260102T000000Z-0001",
            "-i",
            "web.toml",
            "--state-dir",
            &shared,
        ],
    );
    assert_eq!(other.code, 2, "{}", other.stderr);
    assert!(other.stderr.contains("db.toml"), "{}", other.stderr);
    // Neither -i nor --state-dir: which runs is not guessed.
    let neither = run_in(dir.path(), &["status"]);
    assert_eq!(neither.code, 2, "{}", neither.stderr);
    assert!(neither.stderr.contains("--inventory"), "{}", neither.stderr);
}

/// Regression: `resume` used the journal's step indices with whatever the
/// playbook said now; a renamed, inserted or removed step shifted them, so
/// a step could be skipped as done or run on a host where its
/// predecessor never ran.
#[test]
fn resume_refuses_a_playbook_whose_steps_changed_and_touches_nothing() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let text_before = playbook(" && sleep 3", "batch = [1]");
    let work = Workdir::new(&fleet, &InventoryOptions::default(), &text_before);
    let (mut child, _output) = work.run_until("\"step_started\"");
    child.kill().unwrap();
    child.wait().unwrap();
    let drained = fleet.server_state("web-01");
    assert_ne!(drained.status, "UP");

    let renamed = text_before.replacen(
        "[[steps]]\nname = \"deploy\"",
        "[[steps]]\nname = \"install\"",
        1,
    );
    assert_ne!(renamed, text_before);
    std::fs::write(work.path().join("playbook.toml"), &renamed).unwrap();
    let resume = work.fleetroll(&["resume"]);
    assert_eq!(resume.code, 2, "{}", resume.stderr);
    assert!(
        resume
            .stderr
            .contains("step 1 was `deploy`, is now `install`"),
        "{}",
        resume.stderr
    );
    assert!(
        resume.stderr.contains("nothing was touched"),
        "{}",
        resume.stderr
    );
    assert_eq!(fleet.server_state("web-01").status, drained.status);
    assert!(fleet.host("web-02").deploys().is_empty());

    let added = format!("{text_before}\n[[steps]]\nname = \"cleanup\"\nrun = \"true\"\n");
    std::fs::write(work.path().join("playbook.toml"), &added).unwrap();
    let resume = work.fleetroll(&["resume"]);
    assert_eq!(resume.code, 2, "{}", resume.stderr);
    assert!(
        resume.stderr.contains("step 2 `cleanup` was added"),
        "{}",
        resume.stderr
    );

    // A record a kill cut short is ignored by status, and dropped by resume
    // (before it appends, so that its records do not join it).
    let journal = journals(&work.state()).pop().unwrap();
    let complete = std::fs::read_to_string(&journal).unwrap();
    let lines = complete.lines().count();
    std::fs::write(&journal, format!("{complete}{{\"v\":1,\"ts\":\"2026")).unwrap();
    let status = crate::rollout::status_json(&work);
    assert_eq!(status["torn_line"], lines + 1);

    // The playbook the run started with resumes it.
    // (It takes over the lock the killed run left: same run, pid gone.)
    std::fs::write(work.path().join("playbook.toml"), &text_before).unwrap();
    let resume = work.fleetroll(&["resume"]);
    assert_eq!(resume.code, 0, "{}", resume.stderr);
    assert!(resume.stderr.contains("cut short"), "{}", resume.stderr);
    let status = crate::rollout::status_json(&work);
    assert_eq!(status["torn_line"], serde_json::Value::Null);
    assert_eq!(status["outcome"], "succeeded");
    assert_all_in_service(&fleet, &[]);
    assert!(fleet.hosts().iter().all(|h| h.version() == "2.0"));
}
