//! Bad input is refused with exit code 2 and a message that points into the file.
//!
//! Each case starts from a valid pair of files and breaks one thing; the
//! rendered diagnostics are snapshots, so a change in wording is reviewed.

use crate::support::Scratch;

const INVENTORY: &str = r#"[defaults]
user = "deploy"
balancer = "web"

[balancers.web]
kind = "haproxy"
socket = "/run/haproxy/admin.sock"
backend = "app"

[zones.eu-west-1a]
hosts = [
  { name = "web-01", address = "10.0.1.11" },
  { name = "web-02", address = "10.0.1.12" },
]

[zones.eu-west-1b]
hosts = [
  { name = "web-03", address = "10.0.2.11" },
  { name = "web-04", address = "10.0.2.12" },
]
"#;

const PLAYBOOK: &str = r#"name = "restart"

[vars]
version = "1.2.3"

[strategy]
batch = [1, "50%"]
max_unavailable = "50%"

[[steps]]
run = "systemctl restart myapp"
timeout = "2m"

[[probes]]
http = "http://{address}:8080/healthz"
expect_body = "{vars.version}"
"#;

/// Runs `validate` on the base files with one replacement applied, and
/// returns what the user sees. Asserts the exit code is 2.
fn refused(inventory: &str, playbook: &str) -> String {
    let scratch = Scratch::new()
        .file("inventory.toml", inventory)
        .file("playbook.toml", playbook);
    let output = scratch.run(&["validate", "-i", "inventory.toml", "-p", "playbook.toml"]);
    assert_eq!(output.code, 2, "expected exit 2, got:\n{}", output.stderr);
    assert!(output.stdout.is_empty(), "nothing on stdout when refused");
    output.stderr
}

fn inventory_with(from: &str, to: &str) -> String {
    assert!(INVENTORY.contains(from), "base inventory lacks {from:?}");
    INVENTORY.replacen(from, to, 1)
}

fn playbook_with(from: &str, to: &str) -> String {
    assert!(PLAYBOOK.contains(from), "base playbook lacks {from:?}");
    PLAYBOOK.replacen(from, to, 1)
}

#[test]
fn the_base_files_are_valid() {
    let scratch = Scratch::new()
        .file("inventory.toml", INVENTORY)
        .file("playbook.toml", PLAYBOOK);
    let output = scratch.run(&["validate", "-i", "inventory.toml", "-p", "playbook.toml"]);
    assert_eq!(output.code, 0, "{}", output.stderr);
    assert_eq!(output.stderr, "");
    insta::assert_snapshot!(output.stdout, @r"
    inventory.toml: ok, 4 hosts in 2 zones, 1 balancers, 0 sources
    playbook.toml: ok, 1 steps, 1 probes, 0 gates, 0 rollback steps; 3 batches
    ");
}

#[test]
fn malformed_toml() {
    let stderr = refused(
        &inventory_with("backend = \"app\"", "backend = \"app"),
        PLAYBOOK,
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_key() {
    let stderr = refused(
        INVENTORY,
        &playbook_with("timeout = \"2m\"", "timeout = \"2m\"\nretry = 3"),
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn duplicate_host() {
    let stderr = refused(
        &inventory_with("name = \"web-04\"", "name = \"web-01\""),
        PLAYBOOK,
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_balancer() {
    let stderr = refused(
        &inventory_with(
            "{ name = \"web-03\", address = \"10.0.2.11\" }",
            "{ name = \"web-03\", address = \"10.0.2.11\", balancer = \"wbe\" }",
        ),
        PLAYBOOK,
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn bad_duration() {
    let stderr = refused(
        INVENTORY,
        &playbook_with("timeout = \"2m\"", "timeout = \"two minutes\""),
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn bad_percentage() {
    let stderr = refused(
        INVENTORY,
        &playbook_with("batch = [1, \"50%\"]", "batch = [1, \"150%\"]"),
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_placeholder() {
    let stderr = refused(
        INVENTORY,
        &playbook_with("http://{address}:8080", "http://{ip}:8080"),
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn empty_zone() {
    let stderr = refused(
        &format!("{INVENTORY}\n[zones.eu-west-1c]\nhosts = []\n"),
        PLAYBOOK,
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn impossible_strategy_batch_over_max_unavailable() {
    let stderr = refused(
        INVENTORY,
        &playbook_with("batch = [1, \"50%\"]", "batch = [1, 3]"),
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn impossible_strategy_zone_cap_of_zero() {
    let stderr = refused(
        INVENTORY,
        &playbook_with(
            "max_unavailable = \"50%\"",
            "max_unavailable = \"50%\"\nmax_unavailable_per_zone = 0",
        ),
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn malformed_address() {
    let stderr = refused(
        &inventory_with(
            "{ name = \"web-02\", address = \"10.0.1.12\" }",
            "{ name = \"web-02\", address = \"10.0.1 .12\" }",
        ),
        PLAYBOOK,
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn zone_order_names_a_zone_the_inventory_lacks() {
    let stderr = refused(
        INVENTORY,
        &playbook_with("[strategy]", "[strategy]\nzone_order = [\"eu-west-1z\"]"),
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn undefined_variable() {
    let stderr = refused(
        INVENTORY,
        &playbook_with(
            "systemctl restart myapp",
            "systemctl restart myapp@{vars.instance}",
        ),
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn key_of_another_balancer_kind() {
    let stderr = refused(
        &inventory_with("kind = \"haproxy\"", "kind = \"command\""),
        PLAYBOOK,
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn unknown_time_zone_and_bad_day() {
    let window = "[window]\ndays = [\"sat\", \"sunday\", \"caturday\"]\nstart = \"02:00\"\nend = \"25:00\"\ntimezone = \"Europe/Berln\"\n";
    let stderr = refused(INVENTORY, &format!("{PLAYBOOK}\n{window}"));
    insta::assert_snapshot!(stderr);
}

#[test]
fn step_with_two_actions() {
    let stderr = refused(
        INVENTORY,
        &playbook_with("timeout = \"2m\"", "timeout = \"2m\"\nreboot = true"),
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn several_errors_in_both_files_are_reported_together() {
    let inventory = inventory_with("name = \"web-04\"", "name = \"web-01\"");
    let inventory = inventory.replacen(
        "{ name = \"web-02\", address = \"10.0.1.12\" }",
        "{ name = \"web-02\", address = \"10.0.1 .12\" }",
        1,
    );
    let playbook = playbook_with("timeout = \"2m\"", "timeout = \"soon\"");
    let playbook = playbook.replacen("\"50%\"]", "\"5O%\"]", 1);
    let stderr = refused(&inventory, &playbook);
    assert!(
        stderr.ends_with("4 errors; nothing was touched\n"),
        "{stderr}"
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn a_missing_file_is_named() {
    let scratch = Scratch::new().file("playbook.toml", PLAYBOOK);
    let output = scratch.run(&["validate", "-i", "nope.toml", "-p", "playbook.toml"]);
    assert_eq!(output.code, 2);
    assert!(
        output.stderr.contains("cannot read nope.toml"),
        "{}",
        output.stderr
    );
}

#[test]
fn a_bad_var_override_is_refused() {
    let scratch = Scratch::new()
        .file("inventory.toml", INVENTORY)
        .file("playbook.toml", PLAYBOOK);
    let output = scratch.run(&[
        "validate",
        "-i",
        "inventory.toml",
        "-p",
        "playbook.toml",
        "--var",
        "version",
    ]);
    assert_eq!(output.code, 2);
    assert!(
        output.stderr.contains("expected KEY=VALUE"),
        "{}",
        output.stderr
    );
}

#[test]
fn a_tcp_probe_needs_a_port_unless_a_placeholder_gives_it() {
    let templated = playbook_with(
        "[[probes]]",
        "[[probes]]\ntcp = \"{address}:{vars.port}\"\n\n[[probes]]",
    );
    let scratch = Scratch::new().file("inventory.toml", INVENTORY).file(
        "playbook.toml",
        &templated.replacen("[vars]", "[vars]\nport = \"8080\"", 1),
    );
    let output = scratch.run(&["validate", "-i", "inventory.toml", "-p", "playbook.toml"]);
    assert_eq!(output.code, 0, "{}", output.stderr);
    let stderr = refused(
        INVENTORY,
        &playbook_with(
            "[[probes]]",
            "[[probes]]\ntcp = \"{address}\"\n\n[[probes]]",
        ),
    );
    assert!(stderr.contains("a tcp probe needs HOST:PORT"), "{stderr}");
}

/// HAProxy's runtime API takes `;` (and a newline) as a command separator:
/// a name that reaches `set server BACKEND/SERVER state …` must be a plain
/// identifier, or it could smuggle in a second command.
#[test]
fn names_that_reach_balancer_commands_must_be_plain_identifiers() {
    let inventory = inventory_with(
        "{ name = \"web-01\", address = \"10.0.1.11\" }",
        "{ name = \"web-01;disable\", address = \"10.0.1.11\" }",
    )
    .replacen(
        "{ name = \"web-02\", address = \"10.0.1.12\" }",
        "{ name = \"web-02\", address = \"10.0.1.12\", lb_server = \"web-02;enable\" }",
        1,
    )
    .replacen("backend = \"app\"", "backend = \"app;shutdown\"", 1)
    .replacen("\"web-03\"", "\"-web-03\"", 1);
    let stderr = refused(&inventory, PLAYBOOK);
    assert!(
        stderr.ends_with("4 errors; nothing was touched\n"),
        "{stderr}"
    );
    insta::assert_snapshot!(stderr);
}

/// A value is shell-quoted for a plain command line; inside double (or
/// single) quotes that quoting no longer holds and a `$(…)` in the value
/// would run. `validate` points at the placeholder and says to drop the
/// quotes.
#[test]
fn placeholders_inside_quotes_in_shell_commands_are_refused() {
    let playbook = playbook_with(
        "run = \"systemctl restart myapp\"",
        "run = \"echo \\\"deploying {vars.version}\\\" && systemctl restart myapp\"",
    )
    .replacen(
        "max_unavailable = \"50%\"",
        "max_unavailable = \"50%\"\nskip_if = \"grep -qx '{vars.version}' /etc/myapp/VERSION\"",
        1,
    );
    let stderr = refused(INVENTORY, &playbook);
    assert!(
        stderr.ends_with("2 errors; nothing was touched\n"),
        "{stderr}"
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn handshakes_bound_of_zero() {
    let stderr = refused(
        &inventory_with(
            "balancer = \"web\"\n",
            "balancer = \"web\"\nmax_handshakes = 0\n",
        ),
        PLAYBOOK,
    );
    insta::assert_snapshot!(stderr);
}

/// `[watch]` reads the balancers' counters: a host behind a command
/// balancer only cannot be judged, and `validate` names it.
#[test]
fn watch_for_a_host_behind_no_haproxy() {
    let inventory = inventory_with(
        "[balancers.web]\nkind = \"haproxy\"\nsocket = \"/run/haproxy/admin.sock\"\nbackend = \"app\"\n",
        "[balancers.web]\nkind = \"haproxy\"\nsocket = \"/run/haproxy/admin.sock\"\nbackend = \"app\"\n\n[balancers.f5]\nkind = \"command\"\ndrain = \"true\"\nundrain = \"true\"\n",
    )
    .replacen(
        "{ name = \"web-03\", address = \"10.0.2.11\" }",
        "{ name = \"web-03\", address = \"10.0.2.11\", balancer = \"f5\" }",
        1,
    );
    let stderr = refused(&inventory, &format!("{PLAYBOOK}\n[watch]\nfor = \"60s\"\n"));
    insta::assert_snapshot!(stderr);
}

#[test]
fn watch_with_a_bad_ratio_and_factor() {
    let stderr = refused(
        INVENTORY,
        &format!(
            "{PLAYBOOK}\n[watch]\nmax_error_ratio = \"1\"\nbaseline_factor = 0.5\nsource = \"prometheus\"\n"
        ),
    );
    insta::assert_snapshot!(stderr);
}
