//! `fleetroll plan`: the table and the JSON object, over the real binary.

use crate::support::{Scratch, repo_root, run_in};

const INVENTORY: &str = r#"[defaults]
balancer = "web"

[balancers.web]
kind = "haproxy"
address = "127.0.0.1:9999"
backend = "app"

[balancers.consul]
kind = "command"
drain = "consul maint -enable -service=web -reason={vars.reason}"
undrain = "consul maint -disable -service=web"
ssh = true

[vars]
reason = "patch"

[zones.a]
hosts = [
  { name = "a1", address = "10.0.0.1" },
  { name = "a2", address = "10.0.0.2", balancer = ["web", "consul"] },
  { name = "a3", address = "10.0.0.3" },
  { name = "a4", address = "10.0.0.4" },
]

[zones.b]
hosts = [
  { name = "b1", address = "10.0.1.1" },
  { name = "b2", address = "10.0.1.2", balancer = "none" },
  { name = "b3", address = "10.0.1.3" },
]
"#;

const PLAYBOOK: &str = r#"name = "swap"

[strategy]
batch = [1, 2]
zone_order = ["b"]
max_unavailable = 2
max_failed = 1
pause = "10s"

[window]
days = ["sat"]
start = "23:00"
end = "01:00"
timezone = "UTC"

[drain]
settle = "3s"

[[steps]]
run = "true"
estimate = "20s"

[health]
interval = "2s"
healthy_after = 2

[[probes]]
tcp = "{address}:22"
"#;

fn scratch() -> Scratch {
    Scratch::new()
        .file("inventory.toml", INVENTORY)
        .file("playbook.toml", PLAYBOOK)
}

#[test]
fn human_plan() {
    let output = scratch().run(&["plan", "-i", "inventory.toml", "-p", "playbook.toml"]);
    // Fixed clock: Friday 2026-11-27 12:00 UTC, the window opens Saturday 23:00.
    assert_eq!(output.code, 0, "{}", output.stderr);
    insta::assert_snapshot!(output.stdout);
}

#[test]
fn json_plan_has_the_documented_fields() {
    let output = scratch().run(&[
        "plan",
        "-i",
        "inventory.toml",
        "-p",
        "playbook.toml",
        "--json",
    ]);
    assert_eq!(output.code, 0, "{}", output.stderr);
    let plan: serde_json::Value = serde_json::from_str(&output.stdout).expect("one JSON object");
    assert_eq!(plan["hosts"], 7);
    assert_eq!(plan["failure_budget"], 1);
    // 4 batches of (settle 3s + step 20s + 2 rounds × 2s) + 3 pauses of 10s.
    assert_eq!(plan["estimated_s"], 4.0 * 27.0 + 30.0);
    assert_eq!(plan["window"]["length_s"], 7200);
    assert_eq!(plan["window_fits"], true);
    insta::assert_json_snapshot!(plan["batches"], @r#"
    [
      {
        "balancers": [
          "web"
        ],
        "hosts": [
          "b1"
        ],
        "index": 0,
        "zones": [
          "b"
        ]
      },
      {
        "balancers": [
          "web"
        ],
        "hosts": [
          "b2",
          "b3"
        ],
        "index": 1,
        "zones": [
          "b"
        ]
      },
      {
        "balancers": [
          "web",
          "consul"
        ],
        "hosts": [
          "a1",
          "a2"
        ],
        "index": 2,
        "zones": [
          "a"
        ]
      },
      {
        "balancers": [
          "web"
        ],
        "hosts": [
          "a3",
          "a4"
        ],
        "index": 3,
        "zones": [
          "a"
        ]
      }
    ]
    "#);
}

#[test]
fn limit_selects_hosts_and_zones_by_glob() {
    let output = scratch().run(&[
        "plan",
        "-i",
        "inventory.toml",
        "-p",
        "playbook.toml",
        "--json",
        "--limit",
        "a[12]",
        "--limit",
        "b",
    ]);
    assert_eq!(output.code, 0, "{}", output.stderr);
    let plan: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    let hosts: Vec<&str> = plan["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap())
        })
        .collect();
    assert_eq!(hosts, ["b1", "b2", "b3", "a1", "a2"]);
}

#[test]
fn limit_that_matches_nothing_is_refused() {
    let output = scratch().run(&[
        "plan",
        "-i",
        "inventory.toml",
        "-p",
        "playbook.toml",
        "--limit",
        "web-*",
    ]);
    assert_eq!(output.code, 2);
    assert!(
        output
            .stderr
            .contains("--limit web-* matches no host or zone"),
        "{}",
        output.stderr
    );
}

#[test]
fn var_override_reaches_templates() {
    // The override is what the templates render with; an unknown one is fine.
    let output = scratch().run(&[
        "plan",
        "-i",
        "inventory.toml",
        "-p",
        "playbook.toml",
        "--var",
        "reason=kernel",
        "--json",
    ]);
    assert_eq!(output.code, 0, "{}", output.stderr);
}

#[test]
fn plan_of_an_example_fleet() {
    let output = run_in(
        &repo_root(),
        &[
            "plan",
            "-i",
            "inventories/multi-zone.toml",
            "-p",
            "playbooks/os-security-patch.toml",
        ],
    );
    assert_eq!(output.code, 0, "{}", output.stderr);
    insta::assert_snapshot!(output.stdout);
}
