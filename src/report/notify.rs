//! Webhook notifications (`[notify] webhooks`): a JSON POST at the start, on a halt and at the end of a run.
//!
//! The body has a Slack-compatible `text` field, so an incoming-webhook URL
//! works as is, plus machine fields for other receivers. A webhook is a
//! courtesy: a failing one becomes a warning, never a run failure, and the
//! warning names only `scheme://host:port`, because webhook paths and queries
//! usually are the secret (Slack's `/services/T000/B000/XXX`).

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Url;
use serde::Serialize;

use crate::events::{Outcome, RunOutcome};
use crate::report::summary::Summary;

/// Per request, connect to last byte: a slow receiver must not hold up the run.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Failed hosts named in a message; the rest are counted.
const NAMED_FAILURES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MessageKind {
    #[serde(rename = "run_started")]
    Started,
    #[serde(rename = "run_halted")]
    Halted,
    #[serde(rename = "run_finished")]
    Finished,
}

/// One notification, serialized as the POST body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Slack-compatible: the line a person reads.
    pub text: String,
    #[serde(rename = "event")]
    pub kind: MessageKind,
    pub run_id: String,
    pub playbook: String,
    /// None while the run is starting.
    pub outcome: Option<RunOutcome>,
    pub updated: usize,
    /// Every failing kind: failed, unreachable, unhealthy, timed out.
    pub failed: usize,
    pub skipped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot set up the HTTP client for webhooks")]
    Client(#[source] reqwest::Error),
}

/// Sends messages to the playbook's webhooks.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
    urls: Vec<String>,
}

impl Notifier {
    /// `urls` as resolved from the playbook (`Playbook.webhooks`).
    pub fn new(urls: Vec<String>) -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            // Ops hosts often export a proxy for package mirrors; webhooks
            // are usually internal, and a surprise proxy leaks the URL to it.
            .no_proxy()
            .timeout(TIMEOUT)
            // A redirect could carry the secret to another host, and a
            // receiver that answers 3xx to a POST is misconfigured anyway.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(NotifyError::Client)?;
        Ok(Self { client, urls })
    }

    /// POSTs `message` to every webhook at once; one warning per webhook that
    /// failed, empty when all accepted it.
    pub async fn send(&self, message: &Message) -> Vec<String> {
        let body = match serde_json::to_vec(message) {
            Ok(body) => body,
            Err(error) => return vec![format!("webhook message not sent: {error}")],
        };
        let sends = self
            .urls
            .iter()
            .enumerate()
            .map(|(index, url)| self.post(index, url, body.clone()));
        join_all(sends).await.into_iter().flatten().collect()
    }

    async fn post(&self, index: usize, url: &str, body: Vec<u8>) -> Option<String> {
        let Ok(parsed) = Url::parse(url) else {
            // Not even echoed: an unparseable URL may still hold a token.
            return Some(format!("webhook #{} is not a valid URL", index + 1));
        };
        let origin = origin(&parsed);
        let result = self
            .client
            .post(parsed.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let problem = match result {
            Ok(response) if response.status().is_success() => return None,
            Ok(response) => format!("answered HTTP {}", response.status()),
            Err(error) => describe(error),
        };
        Some(redact(
            &format!("webhook {origin} failed: {problem}"),
            &parsed,
        ))
    }
}

/// The message sent when a run starts.
pub fn message_for_start(run_id: &str, playbook: &str, hosts: usize, batches: usize) -> Message {
    Message {
        text: format!(
            ":arrow_forward: fleetroll {playbook} started: {hosts} {} in {batches} {} (run {run_id})",
            plural(hosts, "host", "hosts"),
            plural(batches, "batch", "batches"),
        ),
        kind: MessageKind::Started,
        run_id: run_id.to_owned(),
        playbook: playbook.to_owned(),
        outcome: None,
        updated: 0,
        failed: 0,
        skipped: 0,
    }
}

/// The message sent when a run ends (or halts), from its summary.
pub fn message_for_end(summary: &Summary, playbook: &str) -> Message {
    let count = |outcome: Outcome| summary.counts.get(outcome.label()).copied().unwrap_or(0);
    let failed_hosts: Vec<_> = summary
        .hosts
        .iter()
        .filter(|h| h.outcome.is_failure())
        .collect();
    let (updated, skipped, failed) = (
        count(Outcome::Updated),
        count(Outcome::Skipped),
        failed_hosts.len(),
    );
    let pending = count(Outcome::Pending);
    let tally = {
        let mut tally = format!("{updated} updated, {failed} failed, {skipped} skipped");
        if pending > 0 {
            tally.push_str(&format!(", {pending} not started"));
        }
        tally
    };
    let reason = summary
        .reason
        .as_deref()
        .map(|r| format!("{r}; "))
        .unwrap_or_default();
    let failures = if failed_hosts.is_empty() {
        String::new()
    } else {
        let mut named: Vec<String> = failed_hosts
            .iter()
            .take(NAMED_FAILURES)
            .map(|h| match (&h.failed_step, h.exit_code) {
                (Some(step), Some(code)) => format!("{} (step \"{step}\" exit {code})", h.host),
                (Some(step), None) => format!("{} (step \"{step}\")", h.host),
                _ => format!("{} ({})", h.host, h.outcome.label()),
            })
            .collect();
        if failed_hosts.len() > NAMED_FAILURES {
            named.push(format!("{} more", failed_hosts.len() - NAMED_FAILURES));
        }
        format!(
            "{failed} {} failed: {}; ",
            plural(failed, "host", "hosts"),
            named.join(", ")
        )
    };
    let run = &summary.run_id;
    let (kind, text) = match summary.outcome {
        RunOutcome::Succeeded => (
            MessageKind::Finished,
            format!(":white_check_mark: fleetroll {playbook} succeeded: {tally} (run {run})"),
        ),
        RunOutcome::Halted => (
            MessageKind::Halted,
            format!(":x: fleetroll {playbook} halted: {reason}{failures}{tally} (run {run})"),
        ),
        RunOutcome::RolledBack => (
            MessageKind::Halted,
            format!(
                ":leftwards_arrow_with_hook: fleetroll {playbook} rolled back: {reason}{failures}{tally} (run {run})"
            ),
        ),
        RunOutcome::WindowClosed => (
            MessageKind::Finished,
            format!(
                ":hourglass: fleetroll {playbook} stopped, the maintenance window closed: {failures}{tally}; `fleetroll resume {run}` continues it"
            ),
        ),
        RunOutcome::Interrupted => (
            MessageKind::Finished,
            format!(
                ":octagonal_sign: fleetroll {playbook} interrupted: {failures}{tally}; `fleetroll resume {run}` continues it"
            ),
        ),
        RunOutcome::Running => (
            MessageKind::Finished,
            format!(":grey_question: fleetroll {playbook} is still running: {tally} (run {run})"),
        ),
    };
    Message {
        text,
        kind,
        run_id: summary.run_id.clone(),
        playbook: playbook.to_owned(),
        outcome: Some(summary.outcome),
        updated,
        failed,
        skipped,
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `scheme://host:port`: enough to tell webhooks apart, nothing secret.
fn origin(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or("?"),
        url.port_or_known_default().unwrap_or(0)
    )
}

fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {}s", TIMEOUT.as_secs());
    }
    crate::transport::http_error::describe(error)
}

/// Defence in depth: whatever a lower layer put into the text, the path,
/// query and credentials of the URL do not leave this module.
fn redact(text: &str, url: &Url) -> String {
    let mut text = text.replace(url.as_str(), &origin(url));
    let secrets = [
        Some(url.path()).filter(|p| *p != "/"),
        url.query(),
        Some(url.username()),
        url.password(),
    ];
    for secret in secrets.into_iter().flatten().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "…");
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;
    use crate::report::summary::HostSummary;

    /// A one-request HTTP receiver on loopback that answers `status` and
    /// hands back the request line and body.
    async fn receiver(status: &'static str) -> (String, oneshot::Receiver<(String, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let header_end = loop {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed before the headers ended");
                request.extend_from_slice(&buf[..n]);
                if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&request[..header_end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while request.len() < header_end + length {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed before the body ended");
                request.extend_from_slice(&buf[..n]);
            }
            let body =
                String::from_utf8(request[header_end..header_end + length].to_vec()).unwrap();
            let response =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            let _ = tx.send((head, body));
        });
        (format!("http://{address}"), rx)
    }

    fn summary(outcome: RunOutcome, hosts: Vec<HostSummary>) -> Summary {
        let mut counts = BTreeMap::new();
        for h in &hosts {
            *counts.entry(h.outcome.label().to_owned()).or_default() += 1;
        }
        Summary {
            run_id: "20261128T010000Z-ab12".into(),
            outcome,
            reason: None,
            hosts,
            zones: BTreeMap::new(),
            longest_out_of_service_ms: 0,
            longest_out_of_service_host: None,
            counts,
        }
    }

    fn host(name: &str, outcome: Outcome) -> HostSummary {
        HostSummary {
            host: name.into(),
            zone: "eu-west-1a".into(),
            phase: "done".into(),
            outcome,
            out_of_service_ms: 0,
            still_out: false,
            failed_step: None,
            exit_code: None,
            output_tail: String::new(),
            detail: None,
        }
    }

    #[tokio::test]
    async fn receiver_gets_slack_compatible_json() {
        let (base, received) = receiver("200 OK").await;
        let notifier = Notifier::new(vec![format!("{base}/T000/B000/XXX")]).unwrap();
        let run = summary(
            RunOutcome::Succeeded,
            vec![
                host("web-01", Outcome::Updated),
                host("web-02", Outcome::Updated),
            ],
        );
        let warnings = notifier.send(&message_for_end(&run, "patch-openssl")).await;
        assert_eq!(warnings, Vec::<String>::new());
        let (head, body) = received.await.unwrap();
        assert!(
            head.starts_with("POST /T000/B000/XXX HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            json["text"],
            ":white_check_mark: fleetroll patch-openssl succeeded: 2 updated, 0 failed, 0 skipped (run 20261128T010000Z-ab12)"
        );
        assert_eq!(json["event"], "run_finished");
        assert_eq!(json["run_id"], "20261128T010000Z-ab12");
        assert_eq!(json["outcome"], "succeeded");
        assert_eq!(json["updated"], 2);
        assert_eq!(json["failed"], 0);
        assert_eq!(json["skipped"], 0);
    }

    #[tokio::test]
    async fn receiver_down_warns_without_the_secret_path() {
        // Bind then drop: the port is now closed.
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/T000/secret?token=hunter2");
        let notifier = Notifier::new(vec![url]).unwrap();
        let warnings = notifier
            .send(&message_for_start("run-1", "patch-openssl", 40, 5))
            .await;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let warning = &warnings[0];
        assert!(
            warning.contains(&format!("http://127.0.0.1:{port}")),
            "{warning}"
        );
        assert!(!warning.contains("/T000/secret"), "{warning}");
        assert!(!warning.contains("hunter2"), "{warning}");
    }

    #[tokio::test]
    async fn receiver_answering_500_warns() {
        let (base, received) = receiver("500 Internal Server Error").await;
        let (ok_base, ok_received) = receiver("204 No Content").await;
        let notifier = Notifier::new(vec![
            format!("{base}/T000/secret"),
            format!("{ok_base}/fine"),
        ])
        .unwrap();
        let warnings = notifier
            .send(&message_for_start("run-1", "patch-openssl", 1, 1))
            .await;
        assert_eq!(
            warnings.len(),
            1,
            "only the failing webhook warns: {warnings:?}"
        );
        assert!(warnings[0].contains("500"), "{}", warnings[0]);
        assert!(warnings[0].contains(&base), "{}", warnings[0]);
        assert!(!warnings[0].contains("/T000/secret"), "{}", warnings[0]);
        received.await.unwrap();
        ok_received.await.unwrap();
    }

    #[test]
    fn halted_message_names_failed_hosts() {
        let mut failed = host("web-02", Outcome::Failed);
        failed.failed_step = Some("install package".into());
        failed.exit_code = Some(100);
        let mut run = summary(
            RunOutcome::Halted,
            vec![
                host("web-01", Outcome::Updated),
                failed,
                host("web-03", Outcome::Unreachable),
                host("web-04", Outcome::Pending),
            ],
        );
        run.reason = Some("failure budget spent (2 of 1)".into());
        let message = message_for_end(&run, "patch-openssl");
        assert_eq!(message.kind, MessageKind::Halted);
        assert_eq!(message.outcome, Some(RunOutcome::Halted));
        assert_eq!(
            (message.updated, message.failed, message.skipped),
            (1, 2, 0)
        );
        assert_eq!(
            message.text,
            ":x: fleetroll patch-openssl halted: failure budget spent (2 of 1); \
             2 hosts failed: web-02 (step \"install package\" exit 100), web-03 (unreachable); \
             1 updated, 2 failed, 0 skipped, 1 not started (run 20261128T010000Z-ab12)"
        );
    }

    #[test]
    fn start_message() {
        let message = message_for_start("run-1", "patch-openssl", 40, 5);
        assert_eq!(message.kind, MessageKind::Started);
        assert_eq!(message.outcome, None);
        assert_eq!(
            message.text,
            ":arrow_forward: fleetroll patch-openssl started: 40 hosts in 5 batches (run run-1)"
        );
    }

    #[test]
    fn redact_removes_path_query_and_credentials() {
        let url =
            Url::parse("https://user:pw@hooks.example.com/services/T000/B000/XXX?k=v").unwrap();
        let text = redact(&format!("error for {url} at /services/T000/B000/XXX"), &url);
        assert_eq!(text, "error for https://hooks.example.com:443 at …");
    }
}
