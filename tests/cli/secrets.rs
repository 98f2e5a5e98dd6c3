//! Secrets in URLs (query tokens, `user:password@`, `{vars.*}` values) never
//! reach the journal, the events, the halt reason or the webhooks.

use crate::fixture::{Fleet, FleetSpec, InventoryOptions};
use crate::http_stub::{Stub, closed_port};
use crate::rollout::{Workdir, assert_all_in_service, playbook_without_ssh_probe, status_json};

/// Given with `--var`, as a real token would be.
const TOKEN: &str = "t0ken-s3cr3t-4242";
/// Written into the playbook as a URL's userinfo.
const PASSWORD: &str = "hunter2-pw";

#[test]
fn gate_and_probe_urls_with_tokens_and_passwords_leak_nowhere() {
    let fleet = Fleet::start(FleetSpec::new(1, 2));
    // A probe that passes, against a stub, with secrets in its URL.
    let health = Stub::start(200, "ok");
    let receiver = Stub::start(200, "{}");
    // A gate that fails: nothing listens on its port, so the HTTP client's
    // own error (which prints the whole URL) is what it gets.
    let gate = closed_port();
    let extra = format!(
        r#"
[[probes]]
http = "http://ops:{PASSWORD}@{health}/ok?token={{vars.token}}"

[[gates]]
http = "http://ops:{PASSWORD}@{gate}/gate?token={{vars.token}}"

[notify]
webhooks = ["{hook}/hook"]
"#,
        health = health.url().trim_start_matches("http://"),
        hook = receiver.url(),
    );
    let work = Workdir::new(
        &fleet,
        &InventoryOptions::default(),
        &(playbook_without_ssh_probe("", "batch = [1]") + &extra),
    );
    let token = format!("token={TOKEN}");
    let run = work.run(&["--json", "--var", &token]);
    assert_eq!(run.code, 1, "the gate halts the run:\n{}", run.stderr);
    // The probe really ran with the secrets, and the gate really failed.
    let probed = health.requests();
    assert!(
        probed.iter().any(|r| r.line.contains(TOKEN)),
        "the probe was sent with its token: {probed:?}"
    );
    let gate_event = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "gate")
        .expect("a gate event");
    assert_eq!(gate_event["ok"], false, "{gate_event}");
    let status = status_json(&work);
    assert_eq!(status["outcome"], "halted");

    let journal: String = std::fs::read_dir(work.state().join("runs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let webhooks: String = receiver
        .requests()
        .iter()
        .map(|r| format!("{}\n{}\n", r.line, r.body))
        .collect();
    assert!(!webhooks.is_empty(), "the webhook was called");
    for (what, text) in [
        ("events on stdout", &run.stdout),
        ("human output", &run.stderr),
        ("journal", &journal),
        ("status --json", &status.to_string()),
        ("webhook bodies", &webhooks),
    ] {
        for secret in [TOKEN, PASSWORD] {
            assert!(
                !text.contains(secret),
                "{what} contains the secret {secret}:\n{text}"
            );
        }
    }
    // What remains still says which gate failed, and where it was sent.
    let halt = status.to_string();
    assert!(halt.contains("/gate"), "{halt}");
    assert!(halt.contains(&gate.to_string()), "{halt}");
    assert_all_in_service(&fleet, &[]);
}
