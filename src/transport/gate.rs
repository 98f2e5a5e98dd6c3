//! Fleet-level gates between batches: a local command, an HTTP check, or a
//! Prometheus instant query compared with a threshold.

use std::time::Duration;

use super::http_error::describe;
use crate::model::playbook::{Gate, GateKind};

/// A gate's verdict, with the value or output it saw.
#[derive(Debug, Clone, PartialEq)]
pub struct GateResult {
    pub ok: bool,
    pub detail: String,
}

impl GateResult {
    fn pass(detail: String) -> Self {
        Self { ok: true, detail }
    }
    fn fail(detail: String) -> Self {
        Self { ok: false, detail }
    }
}

/// Evaluates one gate, bounded by its timeout; never panics on the world.
pub async fn check_gate(gate: &Gate, http: &reqwest::Client) -> GateResult {
    match tokio::time::timeout(gate.timeout, evaluate(gate, http)).await {
        Ok(result) => result,
        Err(_) => GateResult::fail(format!("no answer within {:?}", gate.timeout)),
    }
}

async fn evaluate(gate: &Gate, http: &reqwest::Client) -> GateResult {
    match &gate.kind {
        GateKind::Command { command } => {
            let output = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .kill_on_drop(true)
                .output()
                .await;
            match output {
                Err(error) => GateResult::fail(format!("cannot run: {error}")),
                Ok(output) => {
                    let text = String::from_utf8_lossy(if output.stderr.is_empty() {
                        &output.stdout
                    } else {
                        &output.stderr
                    })
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .to_owned();
                    let status = output
                        .status
                        .code()
                        .map_or_else(|| "killed".to_owned(), |c| format!("exit {c}"));
                    let detail = if text.is_empty() {
                        status
                    } else {
                        format!("{status}: {text}")
                    };
                    if output.status.success() {
                        GateResult::pass(detail)
                    } else {
                        GateResult::fail(detail)
                    }
                }
            }
        }
        GateKind::Http {
            url,
            expect_status,
            expect_body,
        } => match http.get(url).send().await {
            Err(error) => GateResult::fail(format!("GET {}: {}", redact(url), describe(error))),
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                if status != *expect_status {
                    GateResult::fail(format!("status {status}, expected {expect_status}"))
                } else if let Some(expected) =
                    expect_body.as_ref().filter(|e| !body.contains(e.as_str()))
                {
                    GateResult::fail(format!("body lacks {expected:?}"))
                } else {
                    GateResult::pass(format!("status {status}"))
                }
            }
        },
        GateKind::Prometheus {
            url,
            query,
            max,
            min,
        } => {
            let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
            let Ok(mut endpoint) = reqwest::Url::parse(&endpoint) else {
                return GateResult::fail(format!("invalid Prometheus URL {}", redact(url)));
            };
            endpoint.query_pairs_mut().append_pair("query", query);
            let response = http.get(endpoint).send().await;
            let body = match response {
                Err(error) => {
                    return GateResult::fail(format!("query {}: {}", redact(url), describe(error)));
                }
                Ok(response) if !response.status().is_success() => {
                    return GateResult::fail(format!(
                        "query {}: HTTP {}",
                        redact(url),
                        response.status()
                    ));
                }
                Ok(response) => response.text().await.unwrap_or_default(),
            };
            match query_value(&body) {
                Err(reason) => GateResult::fail(reason),
                Ok(value) => compare(value, *max, *min),
            }
        }
    }
}

/// Compares a query's value with the gate's bounds.
pub fn compare(value: f64, max: Option<f64>, min: Option<f64>) -> GateResult {
    if value.is_nan() {
        return GateResult::fail("value is NaN".to_owned());
    }
    if let Some(max) = max
        && value > max
    {
        return GateResult::fail(format!("value {value} is above max {max}"));
    }
    if let Some(min) = min
        && value < min
    {
        return GateResult::fail(format!("value {value} is below min {min}"));
    }
    GateResult::pass(format!("value {value}"))
}

/// The single number an instant query returned: a scalar, or a vector of
/// exactly one sample. No data, or several series, is a failure: a gate
/// that cannot see its metric must not let the rollout go on.
pub fn query_value(body: &str) -> Result<f64, String> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|error| format!("not a Prometheus answer: {error}"))?;
    if json["status"] != "success" {
        return Err(format!(
            "query failed: {}",
            json["error"].as_str().unwrap_or("no error given")
        ));
    }
    let data = &json["data"];
    let sample = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => {
            let result = data["result"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            match result {
                [] => return Err("the query returned no data".to_owned()),
                [one] => &one["value"],
                many => {
                    return Err(format!(
                        "the query returned {} series; a gate needs one",
                        many.len()
                    ));
                }
            }
        }
        other => return Err(format!("unsupported result type {other:?}")),
    };
    sample[1]
        .as_str()
        .and_then(|text| text.parse::<f64>().ok())
        .ok_or_else(|| "the sample has no numeric value".to_owned())
}

/// A URL shown in details without userinfo, path or query, which may hold
/// secrets; the gate's name shows its path (from the file, not rendered).
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default(),
            parsed.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// The HTTP client gates use.
pub fn gate_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scalars_and_single_sample_vectors() {
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.25"]}]}}"#;
        assert_eq!(query_value(vector), Ok(0.25));
        let scalar =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"3"]}}"#;
        assert_eq!(query_value(scalar), Ok(3.0));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(query_value(empty).unwrap_err().contains("no data"));
        let error = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(query_value(error).unwrap_err().contains("parse error"));
    }

    #[test]
    fn compares_with_the_bounds() {
        assert!(compare(0.3, Some(0.5), None).ok);
        assert!(!compare(0.7, Some(0.5), None).ok);
        assert_eq!(
            compare(0.7, Some(0.5), None).detail,
            "value 0.7 is above max 0.5"
        );
        assert!(!compare(1.0, None, Some(2.0)).ok);
        assert!(compare(2.0, Some(2.0), Some(2.0)).ok);
        assert!(!compare(f64::NAN, Some(1.0), None).ok);
    }

    #[test]
    fn redacts_paths_and_queries() {
        assert_eq!(
            redact("https://hooks.example.com/T000/secret?x=1"),
            "https://hooks.example.com"
        );
        assert_eq!(redact("http://127.0.0.1:9090/"), "http://127.0.0.1:9090");
    }

    /// A one-shot HTTP server on loopback answering `status` and `body`.
    async fn serve(status: u16, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    fn gate(kind: GateKind) -> Gate {
        Gate {
            name: "g".into(),
            kind,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn each_kind_of_gate_passes_and_fails() {
        let http = gate_client();
        let command = |command: &str| {
            gate(GateKind::Command {
                command: command.into(),
            })
        };
        assert!(check_gate(&command("exit 0"), &http).await.ok);
        let failed = check_gate(&command("echo too many errors >&2; exit 2"), &http).await;
        assert_eq!(
            (failed.ok, failed.detail.as_str()),
            (false, "exit 2: too many errors")
        );

        let web = |url: String, body: Option<&str>| {
            gate(GateKind::Http {
                url,
                expect_status: 200,
                expect_body: body.map(str::to_owned),
            })
        };
        let ok = serve(200, "all good").await;
        assert!(check_gate(&web(ok.clone(), Some("good")), &http).await.ok);
        assert!(!check_gate(&web(ok, Some("great")), &http).await.ok);
        let broken = serve(500, "oops").await;
        assert_eq!(
            check_gate(&web(broken, None), &http).await.detail,
            "status 500, expected 200"
        );

        let prometheus = |url: String, max: f64| {
            gate(GateKind::Prometheus {
                url,
                query: "up".into(),
                max: Some(max),
                min: None,
            })
        };
        let low = serve(200, r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.1"]}]}}"#).await;
        assert!(check_gate(&prometheus(low.clone(), 0.5), &http).await.ok);
        assert!(!check_gate(&prometheus(low, 0.05), &http).await.ok);
        let empty = serve(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        )
        .await;
        assert!(
            !check_gate(&prometheus(empty, 1.0), &http).await.ok,
            "no data is not a pass"
        );
    }

    #[tokio::test]
    async fn failing_http_gates_keep_url_secrets_out_of_their_detail() {
        let closed = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let http = gate_client();
        let with_secrets = |base: String| base.replace("http://", "http://ops:pa55-SECRET@");
        let web = gate(GateKind::Http {
            url: with_secrets(format!("http://{closed}/gate?token=t0ken-SECRET")),
            expect_status: 200,
            expect_body: None,
        });
        let prometheus = gate(GateKind::Prometheus {
            url: with_secrets(format!("http://{closed}/prom?token=t0ken-SECRET")),
            query: "up".into(),
            max: Some(1.0),
            min: None,
        });
        for gate in [web, prometheus] {
            let result = check_gate(&gate, &http).await;
            assert!(!result.ok, "{result:?}");
            assert!(
                result.detail.contains(&format!("http://{closed}")),
                "{result:?}"
            );
            for secret in ["t0ken-SECRET", "pa55-SECRET", "/gate", "/prom"] {
                assert!(!result.detail.contains(secret), "{result:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_gate_that_hangs_fails_at_its_timeout() {
        let mut slow = gate(GateKind::Command {
            command: "sleep 10".into(),
        });
        slow.timeout = Duration::from_millis(200);
        let result = check_gate(&slow, &gate_client()).await;
        assert!(!result.ok);
        assert!(result.detail.contains("no answer within"));
    }
}
