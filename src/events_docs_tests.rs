//! `docs/events.md` describes every event the code serialises, every field
//! of each, and nothing else. The event names come from serde itself (the
//! derived `Deserialize` lists every variant's tag, as serialised, when
//! asked for an unknown one); the fields come from serialising one value of
//! each event with every optional field set, and the envelope's from a
//! journal line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, value::MapDeserializer};
use serde_json::Value;

use super::*;

const FILE: &str = "docs/events.md";

/// The tags serde knows for [`Event`].
fn event_names() -> BTreeSet<String> {
    let input: MapDeserializer<'_, _, UnknownVariant> =
        MapDeserializer::new(std::iter::once(("event", "")));
    match Event::deserialize(input) {
        Err(UnknownVariant(Some(names))) => names.iter().map(|n| (*n).to_owned()).collect(),
        other => panic!("serde did not list Event's variants: {other:?}"),
    }
}

/// The error a derived `Deserialize` returns for an unknown tag, with the
/// list of known ones.
#[derive(Debug)]
struct UnknownVariant(Option<&'static [&'static str]>);

impl fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for UnknownVariant {}

impl de::Error for UnknownVariant {
    fn custom<T: fmt::Display>(_: T) -> Self {
        UnknownVariant(None)
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        UnknownVariant(Some(expected))
    }
}

/// One value of every event, every optional field set (`Some`, `true`,
/// non-empty), so that every field it can serialise is serialised.
fn every_event() -> Vec<Event> {
    let host = || "web-01".to_owned();
    let hosts = || vec![host()];
    let zones = || vec!["eu-west-1a".to_owned()];
    let step = || "install".to_owned();
    let step_print = || StepPrint {
        name: step(),
        kind: "run".into(),
        sha256: "ab".into(),
    };
    vec![
        Event::RunStarted {
            playbook: "patch".into(),
            hosts: 1,
            batches: 1,
            failure_budget: 0,
            settings: RunSettings {
                inventory: "/etc/fleetroll/inventory.toml".into(),
                playbook: "/etc/fleetroll/playbook.toml".into(),
                var_names: vec!["version".into()],
                limit: vec!["web-*".into()],
                accept_new_host_keys: true,
            },
            plan: vec![PlannedBatch {
                index: 0,
                zones: zones(),
                hosts: hosts(),
                host_zones: zones(),
            }],
            fingerprint: Some(PlaybookFingerprint {
                sha256: "ab".into(),
                steps: vec![step_print()],
                rollback: vec![step_print()],
            }),
            max_unavailable: Some(1),
            window_closes_at: Some("2026-11-29T05:00:00Z".into()),
        },
        Event::RunResumed {
            pending: 1,
            rollback: true,
        },
        Event::BatchStarted {
            index: 0,
            zones: zones(),
            hosts: hosts(),
        },
        Event::HostPhase {
            host: host(),
            phase: Phase::Failed,
            outcome: Some(Outcome::Failed),
            detail: Some("install: exit 1".into()),
        },
        Event::Drain {
            host: host(),
            balancer: "web".into(),
        },
        Event::DrainMemory {
            host: host(),
            balancer: "alb".into(),
            memory: "[]".into(),
        },
        Event::Undrained {
            host: host(),
            balancer: "web".into(),
        },
        Event::StepStarted {
            host: host(),
            step: step(),
            index: 0,
            attempt: 1,
            rollback: true,
        },
        Event::StepFinished {
            host: host(),
            step: step(),
            index: 0,
            exit_code: Some(1),
            duration_ms: 5,
            ok: false,
            output_tail: "E: no such package".into(),
            rollback: true,
        },
        Event::StepSkipped {
            host: host(),
            step: step(),
        },
        Event::Probe {
            host: host(),
            probe: "http://{address}:8080/healthz".into(),
            ok: true,
            detail: "HTTP 200".into(),
        },
        Event::HostWatch {
            host: "web-01".into(),
            verdict: crate::events::WatchVerdict::Regressed,
            detail: "5xx 30.0% of 400 requests".into(),
            seconds: 60,
            requests: 400,
            errors: 120,
            mean_ms: Some(12),
            baseline_hosts: 3,
            baseline_requests: 1200,
            baseline_errors: 0,
            baseline_mean_ms: Some(11),
        },
        Event::Gate {
            name: "error rate".into(),
            ok: true,
            detail: "0.1".into(),
            batch: Some(0),
        },
        Event::BatchFinished { index: 0, ok: true },
        Event::Pause {
            seconds: 30,
            next_batch: 1,
        },
        Event::Warning {
            host: Some(host()),
            message: "still 2 connections".into(),
        },
        Event::RunFinished {
            outcome: RunOutcome::Halted,
            updated: 0,
            failed: 1,
            skipped: 0,
            duration_ms: 5,
            reason: Some("the failure budget is spent".into()),
        },
        Event::Replaced {
            host: host(),
            index: 0,
            old_instance: "i-0old".into(),
            new_instance: "i-0new".into(),
            zone: "eu-west-1a".into(),
        },
        Event::RollbackStarted {
            batch: 0,
            hosts: hosts(),
        },
        Event::Replacing {
            host: host(),
            group: "web-asg".into(),
            old_instance: "i-0old".into(),
            members: vec!["i-0old".into()],
            surge_desired: Some(3),
        },
        Event::Standby {
            host: host(),
            standby: true,
        },
        Event::HandedOver {
            host: host(),
            to_run: "20261128T010500Z-3f2a".into(),
        },
        Event::LockBroken {
            holder_pid: 1,
            holder_host: "controller".into(),
        },
    ]
}

/// What the code serialises.
#[derive(Debug)]
struct Serialised {
    /// The keys every journal line has besides the event's own fields.
    envelope: BTreeSet<String>,
    /// Per event name, its fields: nested ones as `parent.field`, those of
    /// objects in a list as `parent[].field`.
    events: BTreeMap<String, BTreeSet<String>>,
}

fn paths(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
    let Value::Object(map) = value else {
        return;
    };
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(_) => paths(&path, value, out),
            Value::Array(items) => {
                if let Some(first) = items.first() {
                    paths(&format!("{path}[]"), first, out);
                }
            }
            _ => {}
        }
        out.insert(path);
    }
}

fn serialised() -> Serialised {
    let mut events = BTreeMap::new();
    let mut envelope = BTreeSet::new();
    for event in every_event() {
        let value = serde_json::to_value(&event).expect("an event serialises");
        let name = value["event"]
            .as_str()
            .expect("an event carries its tag")
            .to_owned();
        let mut fields = BTreeSet::new();
        paths("", &value, &mut fields);
        fields.remove("event");
        let line = crate::journal::format::encode(&Envelope {
            ts: "2026-11-28T01:05:07Z".into(),
            run_id: "20261128T010500Z-3f2a".into(),
            event,
        })
        .expect("a journal line encodes");
        let line: Value = serde_json::from_slice(&line).expect("a journal line is JSON");
        if let Value::Object(map) = line {
            envelope.extend(map.keys().filter(|k| !fields.contains(*k)).cloned());
        }
        events.insert(name, fields);
    }
    let names = event_names();
    let unsampled: Vec<&String> = names.iter().filter(|n| !events.contains_key(*n)).collect();
    assert!(
        unsampled.is_empty(),
        "events the code serialises with no value in every_event() (src/events_docs_tests.rs): \
         {unsampled:?}; add one with every optional field set"
    );
    Serialised { envelope, events }
}

/// A `## ` section of the page: its heading, line, and the keys of its
/// table rows (rows whose first cell is a `` `key` ``).
#[derive(Debug)]
struct Section {
    heading: String,
    line: usize,
    rows: BTreeSet<String>,
}

fn sections(text: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut fenced = false;
    for (number, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if fenced {
            continue;
        } else if let Some(heading) = line.strip_prefix("## ") {
            sections.push(Section {
                heading: heading.trim().to_owned(),
                line: number + 1,
                rows: BTreeSet::new(),
            });
        } else if let Some(row) = line.strip_prefix("| `")
            && let Some((key, _)) = row.split_once('`')
            && let Some(section) = sections.last_mut()
        {
            section.rows.insert(key.to_owned());
        }
    }
    sections
}

/// The event a heading names: ``## `run_started` `` does; prose does not.
fn event_heading(heading: &str) -> Option<&str> {
    let name = heading.strip_prefix('`')?.strip_suffix('`')?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')).then_some(name)
}

const ENVELOPE: &str = "The envelope";

/// Everything the page gets wrong, each saying what and where.
fn problems(text: &str, code: &Serialised) -> Vec<String> {
    let sections = sections(text);
    let mut problems = Vec::new();
    let rows = |section: &Section, expected: &BTreeSet<String>, what: &str| {
        let mut found = Vec::new();
        for field in expected.difference(&section.rows) {
            found.push(format!(
                "{FILE}, section `## {}` (line {}): {what}: field `{field}` is serialised but has no row `| `{field}` | … |`",
                section.heading, section.line
            ));
        }
        for field in section.rows.difference(expected) {
            found.push(format!(
                "{FILE}, section `## {}` (line {}): row `{field}` is not a field the code serialises for {what}",
                section.heading, section.line
            ));
        }
        found
    };
    match sections.iter().find(|s| s.heading == ENVELOPE) {
        Some(section) => problems.extend(rows(section, &code.envelope, "the envelope")),
        None => problems.push(format!(
            "{FILE} has no section `## {ENVELOPE}` for the fields every line carries: {:?}",
            code.envelope
        )),
    }
    for (name, fields) in &code.events {
        let mut documented = sections
            .iter()
            .filter(|s| event_heading(&s.heading) == Some(name.as_str()));
        match (documented.next(), documented.next()) {
            (None, _) => problems.push(format!(
                "{FILE} has no heading `## `{name}`` for the event `{name}` (a variant of Event in src/events.rs)"
            )),
            (Some(first), Some(second)) => problems.push(format!(
                "{FILE}: the event `{name}` has two headings, lines {} and {}",
                first.line, second.line
            )),
            (Some(section), None) => {
                problems.extend(rows(section, fields, &format!("the event `{name}`")));
            }
        }
    }
    for section in &sections {
        if let Some(name) = event_heading(&section.heading)
            && !code.events.contains_key(name)
        {
            problems.push(format!(
                "{FILE}, line {}: the heading `## {}` names no event the code serialises (it serialises {:?})",
                section.line,
                section.heading,
                code.events.keys().collect::<Vec<_>>()
            ));
        }
    }
    problems
}

#[test]
fn events_docs_describe_every_event_and_field() {
    let code = serialised();
    assert!(
        code.envelope.contains("v") && code.envelope.contains("ts"),
        "{code:?}"
    );
    let problems = problems(include_str!("../docs/events.md"), &code);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The checker itself: a missing heading, a missing or unknown field and a
/// heading of no event are each named.
#[test]
fn events_docs_checker_names_what_is_missing() {
    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|i| (*i).to_owned()).collect()
    }
    let code = Serialised {
        envelope: set(&["v", "ts"]),
        events: BTreeMap::from([
            ("drain".to_owned(), set(&["host", "balancer"])),
            ("pause".to_owned(), set(&["seconds"])),
        ]),
    };
    let text = "## The envelope\n| `v` | x |\n\n## `drain`\n| `host` | x |\n| `zone` | y |\n\n## `teleported`\n";
    let found = problems(text, &code).join("\n");
    for expected in [
        "the envelope: field `ts` is serialised",
        "the event `drain`: field `balancer` is serialised",
        "row `zone`",
        "heading `## `pause``",
        "`## `teleported`` names no event",
    ] {
        assert!(found.contains(expected), "{expected:?} not in:\n{found}");
    }
}
