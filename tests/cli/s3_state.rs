//! `[state] backend = "s3"`: the lock and the journals in a bucket of a real
//! moto_server, shared by two "machines" (each its own working directory,
//! `HOME` and copy of the inventory and playbook), over real sshd hosts
//! behind a real HAProxy.
//!
//! moto implements S3's conditional writes (`If-None-Match: *`, `If-Match`),
//! which are all the lock and the journal's fencing rest on.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::fixture::{Fleet, FleetSpec, InventoryOptions};
use crate::moto::Moto;
use crate::promises::{EVENT_WITHIN, Live, RUN_JSON, phase, poll, signal, watching_out_of_service};
use crate::rollout::{assert_all_in_service, output, playbook};
use crate::support::Output;

const BUCKET: &str = "ops-fleetroll";
const PREFIX: &str = "web/";

/// A moto_server with the state bucket, and a client to look into it.
struct Store {
    runtime: tokio::runtime::Runtime,
    moto: Option<Moto>,
    endpoint: String,
    client: aws_sdk_s3::Client,
}

impl Store {
    fn start() -> Store {
        assert!(
            crate::moto::available(),
            "moto_server is missing: run tests/setup.sh (README, \"Tests\")"
        );
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let moto = runtime.block_on(Moto::start());
        let config = runtime.block_on(moto.config());
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        runtime
            .block_on(client.create_bucket().bucket(BUCKET).send())
            .expect("create the state bucket");
        Store {
            runtime,
            endpoint: moto.endpoint.clone(),
            moto: Some(moto),
            client,
        }
    }

    /// Every key in the bucket, sorted.
    fn keys(&self) -> Vec<String> {
        let listed = self
            .runtime
            .block_on(self.client.list_objects_v2().bucket(BUCKET).send())
            .expect("list the bucket");
        let mut keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }

    /// Makes S3 unreachable: moto is killed.
    fn outage(&mut self) {
        drop(self.moto.take());
    }
}

/// One controller machine: its own directory (working directory, `HOME`,
/// inventory and playbook files), the same fleet and bucket.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new(fleet: &Fleet, store: &Store, lease: &str, playbook: &str) -> Machine {
        let dir = tempfile::tempdir().expect("a machine's directory");
        let inventory = dir.path().join("inventory.toml");
        fleet.write_inventory(&inventory, &InventoryOptions::default());
        let mut text = std::fs::read_to_string(&inventory).unwrap();
        text.push_str(&format!(
            "\n[state]\nbackend = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{}\"\nlease = \"{lease}\"\n",
            store.endpoint
        ));
        std::fs::write(&inventory, text).unwrap();
        std::fs::write(dir.path().join("playbook.toml"), playbook).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Machine { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `fleetroll ARGS` on this machine: no `--state-dir`, the state is the
    /// bucket the inventory names.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fleetroll"));
        command
            .args(args)
            .current_dir(self.path())
            .env("HOME", self.path().join("home"))
            .env("NO_COLOR", "1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("RUST_LOG");
        command
    }

    /// [`Machine::command`] on a machine whose wall clock is `seconds` off
    /// (ahead if positive), as `FLEETROLL_FAKE_NOW` shifts it.
    fn command_with_clock_off(&self, args: &[&str], seconds: i64) -> Command {
        let now = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
        let mut command = self.command(args);
        command.env("FLEETROLL_FAKE_NOW", now.to_string());
        command
    }

    fn fleetroll(&self, args: &[&str]) -> Output {
        output(self.command(args))
    }

    fn run_live(&self) -> Live {
        Live::start(self.command(RUN_JSON), self.path().join("run.stderr"))
    }

    fn resume(&self) -> Output {
        self.fleetroll(&["resume", "-i", "inventory.toml", "-p", "playbook.toml"])
    }

    /// Polls `unlock` until the lock's holder is presumed dead.
    fn wait_until_stale(&self) {
        let stale = poll(Duration::from_secs(60), || {
            let unlock = self.fleetroll(&["unlock", "-i", "inventory.toml"]);
            unlock.stdout.contains("(stale").then_some(())
        });
        assert!(stale.is_some(), "the lease never expired");
    }
}

fn run_id_of(event: &Value) -> String {
    event["run_id"].as_str().expect("a run id").to_owned()
}

/// Two machines, one inventory: exactly one runs; the other exits 4 naming
/// the holder's host and pid, and sees the run (status, unlock, history)
/// from its own copy of the inventory.
#[test]
fn two_machines_running_one_inventory_get_one_lock_between_them() {
    let store = Store::start();
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let book = playbook(" && sleep 2", "batch = [1]");
    let cron = Machine::new(&fleet, &store, "90s", &book);
    let laptop = Machine::new(&fleet, &store, "90s", &book);

    let mut first = cron.run_live();
    let started = first.until("step_started", EVENT_WITHIN, |e| {
        e["event"] == "step_started"
    });
    let run_id = run_id_of(&started);

    let second = laptop.fleetroll(&["run", "-i", "inventory.toml", "-p", "playbook.toml"]);
    assert_eq!(second.code, 4, "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!("pid {}", first.pid()))
            && second.stderr.contains(&run_id)
            && second.stderr.contains(&format!("on {}", this_host())),
        "{}",
        second.stderr
    );
    let status = laptop.fleetroll(&["status", "-i", "inventory.toml", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["run_id"], run_id.as_str());
    assert_eq!(status["outcome"], "running");
    let unlock = laptop.fleetroll(&["unlock", "-i", "inventory.toml", "--force"]);
    assert_eq!(
        unlock.code, 4,
        "a live holder is not broken: {}",
        unlock.stdout
    );

    let ended = first.finish(EVENT_WITHIN);
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert_all_in_service(&fleet, &[]);
    let history = laptop.fleetroll(&["history", "-i", "inventory.toml", "--json"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert!(
        history.stdout.contains("\"succeeded\":1"),
        "{}",
        history.stdout
    );
    let page = laptop.path().join("report.html");
    let report = laptop.fleetroll(&[
        "report",
        "-i",
        "inventory.toml",
        "--html",
        &page.display().to_string(),
    ]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let page = std::fs::read_to_string(&page).expect("the report page");
    assert!(
        page.contains(&run_id) && page.contains("web-02"),
        "the report is of the run"
    );

    let keys = store.keys();
    eprintln!("objects after the run:\n  {}", keys.join("\n  "));
    assert!(keys.contains(&format!("{PREFIX}lock.json")), "{keys:?}");
    let segments: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with(&format!("{PREFIX}runs/{run_id}/")))
        .collect();
    assert!(segments.len() > 2, "{keys:?}");
    assert!(
        segments.iter().all(|k| k.ends_with(".jsonl")),
        "{segments:?}"
    );
    // The lock was released: the next run on the other machine takes it.
    let next = laptop.fleetroll(&["run", "-i", "inventory.toml", "-p", "playbook.toml"]);
    assert_eq!(next.code, 0, "{}", next.stderr);
}

/// kill -9 on one machine mid-run, whose clock runs two hours ahead;
/// `resume` from the other at once: every host updated and back in service,
/// the host that had finished before the kill not deployed again.
#[test]
fn a_run_killed_on_one_machine_is_resumed_from_another() {
    let store = Store::start();
    let fleet = Fleet::start(FleetSpec::new(2, 2));
    let book = playbook(" && sleep 2", "batch = [1]\nmax_unavailable = 1");
    let cron = Machine::new(&fleet, &store, "3s", &book);
    let laptop = Machine::new(&fleet, &store, "3s", &book);

    let mut first = Live::start(
        cron.command_with_clock_off(RUN_JSON, 2 * 3600),
        cron.path().join("run.stderr"),
    );
    first.until("web-01 done", EVENT_WITHIN, phase("web-01", "done"));
    first.until("web-02's step", EVENT_WITHIN, |e| {
        e["event"] == "step_started" && e["host"] == "web-02"
    });
    first.kill_9();

    // Resumed at once: the dead holder's heartbeat, stamped by a clock two
    // hours ahead, would look fresh for two more hours by the laptop's
    // clock. The laptop watches the lock for a lease by its own monotonic
    // clock instead, sees it silent, and takes it over.
    let resumed = laptop.resume();
    assert!(
        resumed.stderr.contains("watching it for up to 3s"),
        "{}",
        resumed.stderr
    );
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    for host in fleet.hosts() {
        assert_eq!(host.version(), "2.0", "{}", host.name);
    }
    assert_eq!(
        fleet.host("web-01").deploys().len(),
        1,
        "web-01 finished before the kill and must not be deployed again"
    );
    assert_all_in_service(&fleet, &[]);
    let status = laptop.fleetroll(&["status", "-i", "inventory.toml", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["outcome"], "succeeded", "{status}");
}

/// A live run on a machine whose clock runs two hours behind: by the other
/// machine's clock its heartbeat is two hours old. `resume` and
/// `unlock --force` from there watch the lock instead, see it renewed, and
/// leave it (exit 4); the run finishes alone, every host deployed once.
#[test]
fn a_live_holder_whose_clock_runs_behind_is_never_taken_over() {
    let store = Store::start();
    let fleet = Fleet::start(FleetSpec::new(2, 2));
    let book = playbook(" && sleep 2", "batch = [1]\nmax_unavailable = 1");
    // A long lease: only a stall of the live holder longer than that (a
    // loaded machine, a slow S3) could make it look dead; it costs nothing,
    // since a watch of a live lock ends at its next heartbeat.
    let cron = Machine::new(&fleet, &store, "9s", &book);
    let laptop = Machine::new(&fleet, &store, "9s", &book);
    let (ended, peak) = watching_out_of_service(&fleet, || {
        let mut first = Live::start(
            cron.command_with_clock_off(RUN_JSON, -2 * 3600),
            cron.path().join("run.stderr"),
        );
        let started = first.until("the run's start", EVENT_WITHIN, |e| {
            e["event"] == "run_started"
        });
        let run_id = run_id_of(&started);
        first.until("web-01's step", EVENT_WITHIN, |e| {
            e["event"] == "step_started" && e["host"] == "web-01"
        });
        let unlock = laptop.fleetroll(&["unlock", "-i", "inventory.toml"]);
        assert!(
            unlock.stdout.contains("(stale by this machine's clock"),
            "by the laptop's clock the live holder looks dead: {}",
            unlock.stdout
        );
        let resumed = laptop.fleetroll(&[
            "resume",
            &run_id,
            "-i",
            "inventory.toml",
            "-p",
            "playbook.toml",
        ]);
        assert_eq!(resumed.code, 4, "{}\n{}", resumed.stdout, resumed.stderr);
        assert!(
            resumed.stderr.contains("its heartbeat moved"),
            "{}",
            resumed.stderr
        );
        let forced = laptop.fleetroll(&["unlock", "-i", "inventory.toml", "--force"]);
        assert_eq!(forced.code, 4, "{}\n{}", forced.stdout, forced.stderr);
        assert!(
            forced.stderr.contains("its heartbeat moved"),
            "{}",
            forced.stderr
        );
        first.finish(EVENT_WITHIN)
    });
    assert_eq!(
        ended.code, 0,
        "the live run was left alone: {}",
        ended.stderr
    );
    for host in fleet.hosts() {
        assert_eq!(host.version(), "2.0", "{}", host.name);
        assert_eq!(host.deploys().len(), 1, "{} deployed once", host.name);
    }
    assert_all_in_service(&fleet, &[]);
    assert!(peak <= 1, "{peak} hosts were out of service at once");
}

/// Two inventories pointed at one bucket and prefix would share one lock
/// and take over each other's drained hosts by name: the first run claims
/// the prefix for its inventory (`inventory.json`), and a run of another
/// inventory there is refused with exit 2 before it touches anything.
#[test]
fn a_prefix_belongs_to_one_inventory() {
    let store = Store::start();
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let book = playbook("", "batch = [1]");
    let prod = Machine::new(&fleet, &store, "3s", &book);
    let first = prod.fleetroll(&["run", "-i", "inventory.toml", "-p", "playbook.toml"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        store.keys().contains(&format!("{PREFIX}inventory.json")),
        "{:?}",
        store.keys()
    );
    let runs_before = store.keys().len();

    let staging = Machine::new(&fleet, &store, "3s", &book);
    std::fs::rename(
        staging.path().join("inventory.toml"),
        staging.path().join("staging.toml"),
    )
    .unwrap();
    let refused = staging.fleetroll(&["run", "-i", "staging.toml", "-p", "playbook.toml"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("another inventory, inventory.toml")
            && refused.stderr.contains("prefix = \"staging/\""),
        "{}",
        refused.stderr
    );
    assert_eq!(store.keys().len(), runs_before, "{:?}", store.keys());
    for host in fleet.hosts() {
        assert_eq!(host.deploys().len(), 1, "{} deployed once", host.name);
    }
    // The lock was given back: the inventory that owns the prefix runs on.
    let again = prod.fleetroll(&["run", "-i", "inventory.toml", "-p", "playbook.toml"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
}

/// Split brain: the holder is frozen (SIGSTOP) past its lease, the lock is
/// broken and the run resumed on the other machine; continued, the frozen
/// holder fails its next write (the journal's next segment is taken, its
/// lease is gone), starts nothing more and exits non-zero. HAProxy never
/// had more hosts out than `max_unavailable`.
#[test]
fn a_frozen_holder_that_lost_its_lock_is_fenced_when_it_wakes() {
    let store = Store::start();
    let fleet = Fleet::start(FleetSpec::new(2, 2));
    let book = playbook(" && sleep 3", "batch = [1]\nmax_unavailable = 1");
    let cron = Machine::new(&fleet, &store, "3s", &book);
    let laptop = Machine::new(&fleet, &store, "3s", &book);
    let (ended, peak) = watching_out_of_service(&fleet, || {
        let mut first = cron.run_live();
        first.until("web-01's step", EVENT_WITHIN, |e| {
            e["event"] == "step_started" && e["host"] == "web-01"
        });
        signal(first.pid(), rustix::process::Signal::STOP);
        laptop.wait_until_stale();
        let broken = laptop.fleetroll(&["unlock", "-i", "inventory.toml", "--force"]);
        assert_eq!(broken.code, 0, "{}\n{}", broken.stdout, broken.stderr);
        assert!(broken.stdout.contains("broken"), "{}", broken.stdout);
        let resumed = laptop.resume();
        assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
        signal(first.pid(), rustix::process::Signal::CONT);
        first.finish(EVENT_WITHIN)
    });
    eprintln!("the frozen holder, continued:\n{}", ended.stderr);
    assert_ne!(
        ended.code, 0,
        "the fenced holder must fail: {}",
        ended.stderr
    );
    assert!(
        ended.stderr.contains("lost the inventory's lock")
            || ended.stderr.contains("is no longer this run's"),
        "{}",
        ended.stderr
    );
    // Woken, it let go of web-01 untouched: the run that took over owns it.
    let returned: Vec<&Value> = ended
        .events
        .iter()
        .filter(|e| e["event"] == "host_phase" && e["phase"] == "undraining")
        .collect();
    assert!(
        returned.is_empty(),
        "the fenced holder touched its host: {returned:?}"
    );
    // Frozen during web-01's step, it must not have gone on to another host.
    let others_drained: Vec<&Value> = ended
        .events
        .iter()
        .filter(|e| e["event"] == "host_phase" && e["phase"] == "draining" && e["host"] != "web-01")
        .collect();
    assert!(
        others_drained.is_empty(),
        "the fenced holder went on: {others_drained:?}"
    );
    for host in fleet.hosts() {
        assert_eq!(host.version(), "2.0", "{}", host.name);
    }
    assert_all_in_service(&fleet, &[]);
    assert!(peak <= 1, "{peak} hosts were out of service at once");
}

/// S3 unreachable mid-run: after bounded retries the run starts no more
/// hosts, returns the healthy one it had out, and exits non-zero naming
/// the journal it could not write.
#[test]
fn a_run_whose_bucket_becomes_unreachable_stops_and_returns_its_hosts() {
    let mut store = Store::start();
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let book = playbook(" && sleep 2", "batch = [1]\nmax_unavailable = 1");
    let cron = Machine::new(&fleet, &store, "90s", &book);

    let mut run = cron.run_live();
    run.until("web-01's step", EVENT_WITHIN, |e| {
        e["event"] == "step_started" && e["host"] == "web-01"
    });
    // The deploy itself is done (the step sleeps after it): the host is
    // healthy on the new version when S3 goes away.
    let deployed = poll(Duration::from_secs(30), || {
        (fleet.host("web-01").version() == "2.0").then_some(())
    });
    assert!(deployed.is_some());
    store.outage();
    let ended = run.finish(Duration::from_secs(180));
    eprintln!("the run, S3 gone:\n{}", ended.stderr);
    assert_eq!(ended.code, 1, "{}", ended.stderr);
    assert!(
        ended.stderr.contains("cannot write the journal s3://")
            && ended.stderr.contains("the lock could not be released"),
        "{}",
        ended.stderr
    );
    assert_eq!(
        fleet.host("web-02").deploys().len(),
        0,
        "a host was started"
    );
    assert_eq!(
        fleet.host("web-03").deploys().len(),
        0,
        "a host was started"
    );
    assert_all_in_service(&fleet, &[]);
}

fn this_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
