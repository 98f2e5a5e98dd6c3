//! What the real-fleet benches share: the rollout they time.

/// The deploy every real-fleet bench times: drain, `appctl deploy` with a
/// 200 ms warm-up, an HTTP probe, undrain, in batches of `batch` spread
/// over the zones; `skip_if` makes a run to the version a host already has
/// a no-op for it.
pub fn playbook(version: &str, batch: usize) -> String {
    format!(
        r#"name = "deploy"

[vars]
version = "{version}"

[strategy]
batch = [{batch}]
max_unavailable = {batch}
zones = "spread"
max_failed = 0
skip_if = "test \"$({{vars.appctl}} {{vars.dir}} version)\" = {{vars.version}}"

[drain]
timeout = "10s"
settle = "100ms"

[[steps]]
name = "deploy"
run = "{{vars.appctl}} {{vars.dir}} deploy {{vars.version}} 200"
timeout = "60s"

[health]
interval = "200ms"
healthy_after = 3
timeout = "60s"

[[probes]]
http = "http://{{address}}:{{vars.app_port}}/healthz"
expect_body = "{{vars.version}}"
"#
    )
}
