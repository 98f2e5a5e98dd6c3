//! The playbook's steps as a run started with them, and what changed since.
//!
//! The journal counts steps by position (`step_finished` index 1 means
//! "the second step is done"). If the playbook's steps are renamed,
//! inserted, removed or rewritten before `resume` or `rollback`, those
//! positions mean other steps: a step would be skipped as done, or run on a
//! host where its predecessor never ran. So `run_started` records a
//! fingerprint and the two commands refuse a playbook whose steps differ,
//! saying which. Variable values are not part of it (they may be secrets,
//! and are passed again on resume), nor are timeouts, retries and
//! estimates, which change how long a step may take, not what it does.

use sha2::{Digest, Sha256};

use crate::events::{PlaybookFingerprint, StepPrint};
use crate::model::playbook::{Playbook, Step, StepAction};

/// At most this many changes are named; the rest are counted.
const NAMED_CHANGES: usize = 5;

pub fn fingerprint(playbook: &Playbook) -> PlaybookFingerprint {
    let steps: Vec<StepPrint> = playbook.steps.iter().map(print).collect();
    let rollback: Vec<StepPrint> = playbook.rollback.iter().map(print).collect();
    let mut hasher = Sha256::new();
    for (list, prints) in [("steps", &steps), ("rollback", &rollback)] {
        field(&mut hasher, list, &prints.len().to_string());
        for step in prints {
            field(&mut hasher, "step", &step.sha256);
        }
    }
    PlaybookFingerprint {
        sha256: hex(hasher),
        steps,
        rollback,
    }
}

fn print(step: &Step) -> StepPrint {
    let Step {
        name,
        action,
        only_if,
        timeout: _,
        retries: _,
        estimate: _,
    } = step;
    let mut hasher = Sha256::new();
    field(&mut hasher, "name", name);
    let kind = match action {
        StepAction::Run(command) => {
            field(&mut hasher, "kind", "run");
            field(&mut hasher, "run", command.as_str());
            "run"
        }
        StepAction::Reboot {
            command,
            boot_id_file,
        } => {
            field(&mut hasher, "kind", "reboot");
            field(&mut hasher, "reboot_command", command.as_str());
            field(&mut hasher, "boot_id_file", boot_id_file.as_str());
            "reboot"
        }
        StepAction::ReplaceAsg { surge } => {
            field(&mut hasher, "kind", "replace");
            field(&mut hasher, "surge", if *surge { "true" } else { "false" });
            "replace"
        }
    };
    if let Some(only_if) = only_if {
        field(&mut hasher, "only_if", only_if.as_str());
    }
    StepPrint {
        name: name.clone(),
        kind: kind.to_owned(),
        sha256: hex(hasher),
    }
}

/// Length-prefixed, so that no two different steps feed the same bytes.
fn field(hasher: &mut Sha256, key: &str, value: &str) {
    for part in [key, value] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
}

fn hex(hasher: Sha256) -> String {
    data_encoding::HEXLOWER.encode(&hasher.finalize())
}

/// What differs between the steps a run recorded and the playbook's now,
/// in words; empty when nothing that matters changed. Rollback steps are
/// compared only with `rollback_too`: until a run has run one, its journal
/// holds no rollback step positions, and fixing or adding rollback steps
/// after a failed run is what an operator must be able to do.
pub fn changes(
    recorded: &PlaybookFingerprint,
    now: &PlaybookFingerprint,
    rollback_too: bool,
) -> Vec<String> {
    let mut found = list_changes("step", &recorded.steps, &now.steps);
    if rollback_too {
        found.extend(list_changes(
            "rollback step",
            &recorded.rollback,
            &now.rollback,
        ));
    }
    if found.len() > NAMED_CHANGES {
        let more = found.len() - NAMED_CHANGES;
        found.truncate(NAMED_CHANGES);
        found.push(format!("{more} more"));
    }
    found
}

/// The lists agree on a common head and tail; what lies between was
/// replaced position by position, or removed and added.
fn list_changes(what: &str, old: &[StepPrint], new: &[StepPrint]) -> Vec<String> {
    let head = old
        .iter()
        .zip(new)
        .take_while(|(a, b)| a.sha256 == b.sha256)
        .count();
    let tail = old[head..]
        .iter()
        .rev()
        .zip(new[head..].iter().rev())
        .take_while(|(a, b)| a.sha256 == b.sha256)
        .count();
    let old_middle = &old[head..old.len() - tail];
    let new_middle = &new[head..new.len() - tail];
    let mut found = Vec::new();
    if old_middle.len() == new_middle.len() {
        for (offset, (was, is)) in old_middle.iter().zip(new_middle).enumerate() {
            let number = head + offset + 1;
            found.push(if was.name != is.name {
                format!("{what} {number} was `{}`, is now `{}`", was.name, is.name)
            } else if was.kind != is.kind {
                format!(
                    "{what} {number} `{}` was a {} step, is now a {} step",
                    was.name, was.kind, is.kind
                )
            } else {
                format!(
                    "{what} {number} `{}` changed what it runs (its command or only_if)",
                    was.name
                )
            });
        }
        return found;
    }
    for (offset, was) in old_middle.iter().enumerate() {
        found.push(format!(
            "{what} {} `{}` was removed",
            head + offset + 1,
            was.name
        ));
    }
    for (offset, is) in new_middle.iter().enumerate() {
        found.push(format!(
            "{what} {} `{}` was added",
            head + offset + 1,
            is.name
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostics::Diagnostics;
    use crate::config::load::{LoadOptions, load_from_text};
    use crate::config::source::SourceFile;

    const INVENTORY: &str = "[zones.a]\nhosts = [{ name = \"h1\", address = \"10.0.0.1\" }]\n";

    fn playbook(text: &str) -> Playbook {
        let config = load_from_text(
            SourceFile::new("inventory.toml", INVENTORY),
            SourceFile::new("playbook.toml", format!("name = \"p\"\n{text}")),
            std::path::Path::new("."),
            &LoadOptions::default(),
        )
        .unwrap_or_else(|d: Diagnostics| panic!("{}", d.render(false)));
        config.playbook
    }

    fn step(name: &str, run: &str) -> String {
        format!("\n[[steps]]\nname = \"{name}\"\nrun = \"{run}\"\n")
    }

    const BASE: [(&str, &str); 3] = [
        ("stop", "systemctl stop app"),
        ("install package", "apt-get install -y app={vars.version}"),
        ("start", "systemctl start app"),
    ];

    fn steps(list: &[(&str, &str)]) -> String {
        let mut text = "[vars]\nversion = \"1\"\n".to_owned();
        for (name, run) in list {
            text.push_str(&step(name, run));
        }
        text
    }

    fn diff(before: &str, after: &str) -> Vec<String> {
        changes(
            &fingerprint(&playbook(before)),
            &fingerprint(&playbook(after)),
            true,
        )
    }

    #[test]
    fn the_same_steps_match_whatever_else_changed() {
        let before = steps(&BASE);
        let after = before
            .replace("version = \"1\"", "version = \"2\"")
            .replace(
                "name = \"stop\"\nrun = \"systemctl stop app\"",
                "name = \"stop\"\nrun = \"systemctl stop app\"\ntimeout = \"1h\"\nretries = 3",
            );
        assert_ne!(before, after);
        assert_eq!(diff(&before, &after), Vec::<String>::new());
        assert_eq!(
            fingerprint(&playbook(&before)).sha256,
            fingerprint(&playbook(&after)).sha256
        );
    }

    #[test]
    fn a_renamed_or_rewritten_step_is_named_by_position() {
        let renamed = steps(&[BASE[0], ("restart", BASE[1].1), BASE[2]]);
        assert_eq!(
            diff(&steps(&BASE), &renamed),
            ["step 2 was `install package`, is now `restart`"]
        );
        let rewritten = steps(&[BASE[0], (BASE[1].0, "apt-get install -y app"), BASE[2]]);
        assert_eq!(
            diff(&steps(&BASE), &rewritten),
            ["step 2 `install package` changed what it runs (its command or only_if)"]
        );
        let rebooting = steps(&BASE).replace(
            "name = \"start\"\nrun = \"systemctl start app\"",
            "name = \"start\"\nreboot = true",
        );
        assert_eq!(
            diff(&steps(&BASE), &rebooting),
            ["step 3 `start` was a run step, is now a reboot step"]
        );
    }

    #[test]
    fn added_and_removed_steps_are_named() {
        let inserted = steps(&[BASE[0], ("backup", "tar c /etc"), BASE[1], BASE[2]]);
        assert_eq!(
            diff(&steps(&BASE), &inserted),
            ["step 2 `backup` was added"]
        );
        let removed = steps(&[BASE[0], BASE[2]]);
        assert_eq!(
            diff(&steps(&BASE), &removed),
            ["step 2 `install package` was removed"]
        );
        let appended = format!("{}{}", steps(&BASE), step("verify", "true"));
        assert_eq!(
            diff(&steps(&BASE), &appended),
            ["step 4 `verify` was added"]
        );
    }

    #[test]
    fn rollback_steps_count_only_when_asked() {
        let with_rollback = format!(
            "{}\n[[rollback]]\nname = \"downgrade\"\nrun = \"apt-get install -y app=1\"\n",
            steps(&BASE)
        );
        let before = fingerprint(&playbook(&steps(&BASE)));
        let after = fingerprint(&playbook(&with_rollback));
        assert_ne!(before.sha256, after.sha256);
        assert_eq!(changes(&before, &after, false), Vec::<String>::new());
        assert_eq!(
            changes(&before, &after, true),
            ["rollback step 1 `downgrade` was added"]
        );
    }

    #[test]
    fn many_changes_are_cut_short() {
        let many: Vec<(String, String)> =
            (0..9).map(|i| (format!("s{i}"), "true".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, r)| (n.as_str(), r.as_str())).collect();
        let found = diff(&steps(&BASE), &steps(&many));
        assert_eq!(found.len(), NAMED_CHANGES + 1);
        assert_eq!(found.last().unwrap(), "7 more");
    }
}
