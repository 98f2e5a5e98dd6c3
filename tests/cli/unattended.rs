//! Unattended runs: maintenance windows, gates, rollback, metrics, webhooks,
//! over real sshd hosts behind a real HAProxy.

use crate::fixture::{Fleet, FleetSpec, InventoryOptions};
use crate::http_stub::{Stub, closed_port, prometheus_answer};
use crate::rollout::{Workdir, assert_all_in_service, output, playbook, status_json};
use crate::support::Output;

/// `fleetroll ARGS` with the clock starting at `now`.
pub(crate) fn at(work: &Workdir, now: &str, args: &[&str]) -> Output {
    let mut command = work.command(args);
    command.env("FLEETROLL_FAKE_NOW", now);
    output(command)
}

pub(crate) const WINDOW: &str =
    "\n[window]\nstart = \"02:00\"\nend = \"05:00\"\ntimezone = \"UTC\"\n";
const RUN: &[&str] = &["run", "-i", "inventory.toml", "-p", "playbook.toml"];

#[test]
fn a_run_outside_its_window_exits_3_and_touches_nothing() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &(playbook("", "batch = [1]") + WINDOW),
    );
    let run = at(&work, "2026-11-28T12:00:00Z", RUN);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("outside the maintenance window"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("02:00"), "{}", run.stderr);
    assert!(fleet.hosts().iter().all(|h| h.deploys().is_empty()));
    assert!(!work.state().join("runs").exists(), "no run was recorded");

    // Regression: a dry run in the afternoon, to check the hosts before
    // the night's window, exited 3 without checking anything.
    let dry = at(
        &work,
        "2026-11-28T12:00:00Z",
        &[RUN, &["--dry-run"]].concat(),
    );
    assert_eq!(dry.code, 0, "{}{}", dry.stdout, dry.stderr);
    for host in ["web-01", "web-02"] {
        assert!(
            dry.stdout
                .lines()
                .any(|line| line.trim_start().starts_with(host) && line.contains("ssh ok")),
            "{host}:\n{}",
            dry.stdout
        );
    }
    assert!(fleet.hosts().iter().all(|h| h.deploys().is_empty()));
    assert!(!work.state().join("runs").exists(), "no run was recorded");
}

#[test]
fn the_window_closing_mid_run_exits_3_and_resume_finishes_in_the_next_one() {
    let fleet = Fleet::start(FleetSpec::new(1, 4));
    // Batches of about 3 s against 8 s of window: one or two fit, not four.
    let playbook = playbook(" && sleep 2", "batch = [1]")
        .replace("timeout = \"30s\"", "timeout = \"30s\"\nestimate = \"1s\"")
        + WINDOW;
    let work = Workdir::new(&fleet, &InventoryOptions::default(), &playbook);
    // Eight seconds before the window closes: room for a batch or two.
    let run = at(&work, "2026-11-28T04:59:52Z", RUN);
    eprintln!("--- run (exit {}):\n{}", run.code, run.stderr);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("window closes at"), "{}", run.stderr);
    let done = fleet
        .hosts()
        .iter()
        .filter(|h| h.version() == "2.0")
        .count();
    assert!(
        (1..4).contains(&done),
        "{done} hosts done before the window closed"
    );
    assert_eq!(status_json(&work)["outcome"], "window_closed");
    assert_all_in_service(&fleet, &[]);

    // The next night's window: resume finishes, and nobody is deployed twice.
    let resume = at(&work, "2026-11-29T02:00:05Z", &["resume"]);
    eprintln!("--- resume (exit {}):\n{}", resume.code, resume.stderr);
    assert_eq!(resume.code, 0, "{}", resume.stderr);
    assert!(fleet.hosts().iter().all(|h| h.version() == "2.0"));
    assert!(fleet.hosts().iter().all(|h| h.deploys().len() == 1));
    assert_eq!(status_json(&work)["outcome"], "succeeded");
}

#[test]
fn a_failing_gate_halts_the_run_and_says_what_it_saw() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let prometheus = Stub::start(200, &prometheus_answer(0.9));
    let healthy = Stub::start(200, "ok");
    let gates = format!(
        "\n[[gates]]\ncommand = \"true\"\n\n[[gates]]\nhttp = \"{}/health\"\nexpect_body = \"ok\"\n\n\
         [[gates]]\nname = \"error rate\"\nprometheus = \"{}\"\nquery = \"sum(rate(errors{{code=~'5..'}}[2m]))\"\nmax = 0.5\n",
        healthy.url(),
        prometheus.url()
    );
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &(playbook("", "batch = [1]") + &gates),
    );
    let run = work.run(&["--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    // Only the first batch ran; the gates after it stopped the run.
    assert_eq!(fleet.host("web-01").version(), "2.0");
    assert!(fleet.host("web-02").deploys().is_empty());
    let gates: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "gate")
        .collect();
    assert_eq!(gates.len(), 3, "{gates:?}");
    assert_eq!(gates[0]["ok"], true);
    assert_eq!(gates[1]["ok"], true);
    assert_eq!(gates[2]["name"], "error rate");
    assert_eq!(gates[2]["ok"], false);
    assert_eq!(gates[2]["detail"], "value 0.9 is above max 0.5");
    // The query reached Prometheus' API with the label matcher intact.
    let request = &prometheus.requests()[0].line;
    assert!(
        request.starts_with("GET /api/v1/query?query=sum%28rate%28errors%7Bcode%3D%7E%275..%27%7D"),
        "{request}"
    );
    let status = status_json(&work);
    assert_eq!(status["outcome"], "halted");
    assert!(status.to_string().contains("gate error rate failed"));
    assert_all_in_service(&fleet, &[]);
}

/// Deploys 2.0; web-02's new version is broken. Rollback deploys 1.0.
pub(crate) fn rollback_playbook(strategy: &str) -> String {
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
run = "{{vars.appctl}} {{vars.dir}} deploy {{vars.version}} 200 && if [ {{host}} = web-02 ]; then touch {{vars.dir}}/BROKEN; fi"

[[rollback]]
name = "deploy previous"
run = "rm -f {{vars.dir}}/BROKEN && {{vars.appctl}} {{vars.dir}} deploy {{vars.previous}} 200"

[health]
interval = "100ms"
healthy_after = 2
timeout = "3s"

[[probes]]
http = "http://{{address}}:{{vars.app_port}}/healthz"
expect_body = "{{vars.version}}"
"#
    )
}

#[test]
fn on_failure_rollback_returns_the_failed_batch_to_the_old_version() {
    let fleet = Fleet::start(FleetSpec::new(1, 4));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &rollback_playbook("batch = [2]\non_failure = \"rollback\""),
    );
    let run = work.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for host in ["web-01", "web-02"] {
        assert_eq!(
            fleet.host(host).version(),
            "1.0",
            "{host} is back on the old version"
        );
        assert_eq!(
            fleet.host(host).deploys(),
            ["deploy 2.0", "deploy 1.0"],
            "{host}"
        );
    }
    for host in ["web-03", "web-04"] {
        assert!(fleet.host(host).deploys().is_empty(), "{host} untouched");
    }
    assert_all_in_service(&fleet, &[]);
    let status = status_json(&work);
    assert_eq!(status["outcome"], "rolled_back");
    assert_eq!(status["hosts"]["web-01"]["outcome"], "rolled_back");
    assert_eq!(status["hosts"]["web-02"]["outcome"], "rolled_back");
}

#[test]
fn rollback_command_undoes_a_whole_run_newest_batch_first() {
    let fleet = Fleet::start(FleetSpec::new(1, 3));
    let playbook = rollback_playbook("batch = [1]").replace(
        " && if [ {host} = web-02 ]; then touch {vars.dir}/BROKEN; fi",
        "",
    );
    let work = Workdir::new(&fleet, &InventoryOptions::default(), &playbook);
    let run = work.run(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run_id = status_json(&work)["run_id"].as_str().unwrap().to_owned();
    let rollback = work.fleetroll(&["rollback", &run_id, "--json"]);
    assert_eq!(rollback.code, 0, "{}", rollback.stderr);
    assert!(fleet.hosts().iter().all(|h| h.version() == "1.0"));
    assert_all_in_service(&fleet, &[]);
    // Newest batch first: web-03 was rolled back before web-01.
    let order: Vec<String> = rollback
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "host_phase" && e["phase"] == "rolled_back")
        .map(|e| e["host"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["web-03", "web-02", "web-01"]);
    let status = status_json(&work);
    assert_eq!(status["outcome"], "rolled_back");
    assert!(
        status["hosts"]
            .as_object()
            .unwrap()
            .values()
            .all(|h| h["outcome"] == "rolled_back")
    );
}

/// `name{labels} value` lines of a Prometheus text file.
fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .map(|v| v.trim().parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("no {name_and_labels} in:\n{text}"))
}

#[test]
fn the_metrics_file_reports_the_run_and_keeps_the_last_success() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &playbook("", "batch = [1]"),
    );
    let metrics = work.path().join("fleetroll.prom");
    let path = metrics.to_str().unwrap();
    assert_eq!(work.run(&["--metrics-file", path]).code, 0);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(
            &text,
            "fleetroll_last_run_outcome{playbook=\"deploy\",outcome=\"succeeded\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "fleetroll_last_run_outcome{playbook=\"deploy\",outcome=\"halted\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(
            &text,
            "fleetroll_hosts{playbook=\"deploy\",outcome=\"updated\"}"
        ),
        2.0
    );
    let success = metric(
        &text,
        "fleetroll_last_success_timestamp_seconds{playbook=\"deploy\"}",
    );
    assert!(success > 1.7e9, "{success}");
    assert!(
        metric(
            &text,
            "fleetroll_longest_capacity_loss_seconds{playbook=\"deploy\"}"
        ) > 0.0
    );
    assert!(
        !work.path().join("fleetroll.prom.tmp").exists(),
        "written atomically"
    );

    // A failed run later keeps the time of the last success.
    std::fs::write(fleet.host("web-01").dir.join("VERSION"), "1.0").unwrap();
    let failing =
        playbook(" && exit 3", "batch = [1]").replace("version = \"2.0\"", "version = \"3.0\"");
    std::fs::write(work.path().join("playbook.toml"), failing).unwrap();
    assert_eq!(work.run(&["--metrics-file", path]).code, 1);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(
        metric(
            &text,
            "fleetroll_last_run_outcome{playbook=\"deploy\",outcome=\"halted\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "fleetroll_last_success_timestamp_seconds{playbook=\"deploy\"}"
        ),
        success
    );
    assert_eq!(
        metric(
            &text,
            "fleetroll_hosts{playbook=\"deploy\",outcome=\"failed\"}"
        ),
        1.0
    );
}

#[test]
fn webhooks_get_start_and_end_and_a_dead_one_does_not_fail_the_run() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let receiver = Stub::start(200, "{}");
    let dead = format!("http://{}/T000/secret-token", closed_port());
    let notify = format!(
        "\n[notify]\nwebhooks = [\"{dead}\", \"{}/hook\"]\n",
        receiver.url()
    );
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &(playbook("", "batch = [2]") + &notify),
    );
    let run = work.run(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("warning"),
        "the dead webhook is reported: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("secret-token"),
        "webhook paths are secrets: {}",
        run.stderr
    );
    let posts = receiver.requests();
    assert_eq!(posts.len(), 2, "{posts:?}");
    let start: serde_json::Value = serde_json::from_str(&posts[0].body).unwrap();
    let end: serde_json::Value = serde_json::from_str(&posts[1].body).unwrap();
    assert!(start["text"].as_str().unwrap().contains("deploy"));
    assert_eq!(end["outcome"], "succeeded");
    assert_eq!(end["updated"], 2);
    // Nothing secret went into the journal either.
    let journal: String = std::fs::read_dir(work.state().join("runs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(!journal.contains("secret-token"));
}

/// `--log-file` keeps a timestamped copy of a cron run: its progress lines
/// and its warnings, run after run in one file, with no secret in it; `-v`
/// adds fleetroll's debug lines on stderr, and `-q` leaves only errors
/// there while the file still gets everything.
#[test]
fn a_log_file_keeps_every_run_and_its_warnings_and_v_adds_debug_lines() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let dead = format!("http://{}/T000/secret-token", closed_port());
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &(playbook("", "batch = [1]") + &format!("\n[notify]\nwebhooks = [\"{dead}\"]\n")),
    );
    let log = work.path().join("logs/cron.log");
    let log_arg = log.display().to_string();

    let first = work.run(&["-v", "--log-file", &log_arg]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stderr.contains("fleetroll: debug: ")
            && first.stderr.contains("web-01: connecting to root@"),
        "-v shows the SSH connects: {}",
        first.stderr
    );
    assert!(
        first.stderr.contains("fleetroll: warning: "),
        "{}",
        first.stderr
    );
    let second = work.run(&["-q", "--log-file", &log_arg]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.stderr, "", "-q: only errors on stderr");

    let text = std::fs::read_to_string(&log).expect("the log file was written");
    let runs: Vec<String> = std::fs::read_dir(work.state().join("runs"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .replace(".jsonl", "")
        })
        .collect();
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert!(text.contains(run.as_str()), "{run} is in the log:\n{text}");
    }
    for host in ["web-01", "web-02"] {
        assert!(text.contains(host), "{host} is in the log:\n{text}");
    }
    // Both runs' webhook warnings, each line timestamped.
    assert!(text.matches("WARN").count() >= 2, "{text}");
    assert!(
        text.lines()
            .filter(|l| l.contains(" web-0") && !l.starts_with("  "))
            .all(|l| l.starts_with("20")),
        "every progress line (not the summary's table) starts with its time:\n{text}"
    );
    assert_eq!(text.matches("done (updated)").count(), 2, "{text}");
    assert!(text.matches("skip_if: already done").count() >= 2, "{text}");
    assert!(!text.contains("secret-token"), "{text}");

    // RUST_LOG reaches the SSH library's own diagnostics too (russh logs
    // through `log`, forwarded to the same subscriber).
    let mut dry = work.command(&[
        "run",
        "--dry-run",
        "-i",
        "inventory.toml",
        "-p",
        "playbook.toml",
    ]);
    dry.env("RUST_LOG", "fleetroll=debug,russh=debug");
    let dry = output(dry);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stderr.contains("web-01: connecting to root@") && dry.stderr.contains("debug: russh::"),
        "{}",
        dry.stderr
    );
}
