//! `fleetroll demo`, the README's first command, works on its own.

use crate::support::{repo_root, run_in};

#[test]
fn the_demo_rolls_twelve_simulated_hosts_without_a_failed_request() {
    let output = run_in(&repo_root(), &["demo", "--json"]);
    assert_eq!(output.code, 0, "{}", output.stderr);
    let finished: serde_json::Value = output
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "run_finished")
        .expect("a run_finished event");
    assert_eq!(finished["outcome"], "succeeded");
    assert_eq!(finished["updated"], 12);
    let traffic = output
        .stderr
        .lines()
        .find(|line| line.starts_with("traffic during the rollout"))
        .expect("the traffic report");
    assert!(traffic.contains(", 0 failed"), "{traffic}");
    assert!(traffic.contains("served 2.0"), "{traffic}");
}
