//! `fleetroll history` over real runs of one inventory, each ending its own
//! way: rolled back, succeeded twice, halted, killed.

use crate::fixture::{Fleet, FleetSpec, InventoryOptions};
use crate::rollout::{Workdir, playbook};
use crate::unattended::rollback_playbook;

#[test]
fn history_sums_runs_that_ended_every_way() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    let risky = rollback_playbook("batch = [1]\non_failure = \"rollback\"").replacen(
        "name = \"deploy\"",
        "name = \"risky\"",
        1,
    );
    let work = Workdir::new(&fleet, &InventoryOptions::default(), &risky);
    let run = work.run(&[]);
    assert_eq!(run.code, 1, "rolled back:\n{}", run.stderr);

    let failing = playbook(" && test {vars.version} != 3.0 && sleep 1", "batch = [1]");
    std::fs::write(work.path().join("playbook.toml"), &failing).unwrap();
    assert_eq!(work.run(&[]).code, 0, "2.0 everywhere");
    assert_eq!(work.run(&[]).code, 0, "already 2.0: skipped");
    let halted = work.run(&["--var", "version=3.0"]);
    assert_eq!(halted.code, 1, "3.0 fails its step:\n{}", halted.stderr);

    // Killed while its first step runs.
    std::fs::write(
        work.path().join("playbook.toml"),
        failing.replace("version = \"2.0\"", "version = \"4.0\""),
    )
    .unwrap();
    let (mut child, _) = work.run_until("\"step_started\"");
    child.kill().expect("kill -9");
    child.wait().unwrap();
    // A journal that is not one: reported, not fatal.
    std::fs::write(
        work.state().join("runs/20200101T000000Z-0bad.jsonl"),
        "{not json\n{}\n",
    )
    .unwrap();

    let metrics = work.path().join("history.prom");
    let history = work.fleetroll(&[
        "history",
        "-i",
        "inventory.toml",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    eprintln!("--- fleetroll history:\n{}", history.stdout);
    assert_eq!(history.code, 0, "{}", history.stderr);
    let text = &history.stdout;
    for expected in [
        "playbook deploy: 4 runs: 1 halted, 1 interrupted, 2 succeeded",
        "playbook risky: 1 runs: 1 rolled back",
        "overall: 5 runs",
        "deployment success rate   40.0 %",
        "rollback frequency        20.0 % (1 of 5 runs)",
        "skipped run 20200101T000000Z-0bad: ",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    let overall = text.split("overall:").nth(1).unwrap();
    let row = |label: &str| {
        overall
            .lines()
            .find(|line| line.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} in:\n{overall}"))
            .to_owned()
    };
    // Steps: the risky run's two (web-02's succeeded, its probes failed;
    // rollback steps are not counted), web-02's 2.0 in the first success,
    // none in the second (skipped), web-01's failed 3.0; the killed run's
    // never finished.
    assert!(
        row("step failure rate").ends_with("25.0 % (1 of 4 steps)"),
        "{}",
        row("step failure rate")
    );
    assert!(
        !row("time to deploy").contains("median -"),
        "{}",
        row("time to deploy")
    );
    assert!(
        !row("mean time to roll back").ends_with('-'),
        "{}",
        row("mean time to roll back")
    );
    assert!(row("hosts").contains("1 rolled back"), "{}", row("hosts"));

    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("fleetroll_history_success_ratio{playbook=\"\"} 0.4"),
        "{prom}"
    );
    assert!(
        prom.contains("fleetroll_history_runs{playbook=\"deploy\",outcome=\"interrupted\"} 1"),
        "{prom}"
    );

    let json = work.fleetroll(&["history", "-i", "inventory.toml", "--json"]);
    let value: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(value["overall"]["runs"], 5);
    assert_eq!(value["playbooks"]["risky"]["rollbacks"], 1);
    assert_eq!(value["unreadable"][0][0], "20200101T000000Z-0bad");

    // Nothing started after tomorrow.
    let none = work.fleetroll(&["history", "-i", "inventory.toml", "--since", "2999-01-01"]);
    assert!(none.stdout.contains("overall: 0 runs"), "{}", none.stdout);
    let bad = work.fleetroll(&["history", "-i", "inventory.toml", "--since", "soon"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
