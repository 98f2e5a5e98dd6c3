//! Every example file that ships in inventories/ and playbooks/ validates.

use std::collections::BTreeSet;

use crate::support::{repo_root, run_in};

/// Each playbook with the inventories it is meant for.
const PAIRS: &[(&str, &str)] = &[
    (
        "inventories/small-haproxy.toml",
        "playbooks/restart-service.toml",
    ),
    (
        "inventories/multi-zone.toml",
        "playbooks/restart-service.toml",
    ),
    ("inventories/multi-zone.toml", "playbooks/package-swap.toml"),
    (
        "inventories/multi-zone.toml",
        "playbooks/os-security-patch.toml",
    ),
    ("inventories/aws-asg.toml", "playbooks/asg-replace.toml"),
    ("inventories/aws-asg.toml", "playbooks/restart-service.toml"),
    (
        "inventories/small-haproxy.toml",
        "playbooks/watched-release.toml",
    ),
];

#[test]
fn every_example_pair_validates_without_warnings() {
    for (inventory, playbook) in PAIRS {
        let output = run_in(&repo_root(), &["validate", "-i", inventory, "-p", playbook]);
        assert_eq!(
            output.code, 0,
            "{inventory} + {playbook}:\n{}",
            output.stderr
        );
        assert_eq!(output.stderr, "", "{inventory} + {playbook} warns");
    }
}

#[test]
fn every_example_file_is_covered_by_a_pair() {
    let mut shipped = BTreeSet::new();
    for dir in ["inventories", "playbooks"] {
        for entry in std::fs::read_dir(repo_root().join(dir)).expect("example directory") {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".toml") {
                shipped.insert(format!("{dir}/{name}"));
            }
        }
    }
    let covered: BTreeSet<String> = PAIRS
        .iter()
        .flat_map(|(i, p)| [i.to_string(), p.to_string()])
        .collect();
    assert_eq!(shipped, covered, "add new example files to PAIRS");
}
