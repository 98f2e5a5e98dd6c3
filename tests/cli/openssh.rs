//! The user's OpenSSH client configuration, as `validate` reports it: what
//! each host's SSH settings are and where each came from; bad lines refused
//! with their file, line and column.

use crate::support::Scratch;

const INVENTORY: &str = r#"[defaults]
ssh_config = "ssh_config"
user = "deploy"

[zones.a]
hosts = [
  { name = "web-1" },
  { name = "web-2", address = "10.0.0.2", port = 2022 },
]
"#;

const PLAYBOOK: &str = "name = \"t\"\n[[steps]]\nrun = \"true\"\n";

const SSH_CONFIG: &str = "Host web-*
  HostName 10.0.0.1
  User admin
  Port 2200
  ProxyJump ops@bastion

Host bastion
  HostName 192.0.2.10
  Port 2222

Host *
  IdentityFile /keys/fleet
  StrictHostKeyChecking no
";

fn validate_verbose(scratch: &Scratch) -> crate::support::Output {
    scratch.run(&[
        "validate",
        "-v",
        "-i",
        "inventory.toml",
        "-p",
        "playbook.toml",
    ])
}

#[test]
fn validate_verbose_says_where_each_ssh_setting_came_from() {
    let scratch = Scratch::new()
        .file("inventory.toml", INVENTORY)
        .file("playbook.toml", PLAYBOOK)
        .file("ssh_config", SSH_CONFIG);
    let output = validate_verbose(&scratch);
    assert_eq!(output.code, 0, "{}", output.stderr);
    let block = |host: &str| -> String {
        let start = output
            .stdout
            .find(&format!("host {host} "))
            .unwrap_or_else(|| panic!("no block for {host}:\n{}", output.stdout));
        let rest = &output.stdout[start..];
        rest[..rest[1..].find("\nhost ").map_or(rest.len(), |end| end + 1)].to_owned()
    };
    let row = |block: &str, key: &str| -> Vec<String> {
        block
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{block}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let web1 = block("web-1");
    // No address in the inventory: ssh_config's HostName.
    assert_eq!(
        row(&web1, "address"),
        ["address", "10.0.0.1", "ssh_config:2"]
    );
    // The inventory's [defaults] user wins over ssh_config's User.
    assert_eq!(row(&web1, "user"), ["user", "deploy", "inventory.toml:3:8"]);
    assert_eq!(row(&web1, "port"), ["port", "2200", "ssh_config:4"]);
    assert_eq!(
        row(&web1, "jump"),
        ["jump", "ops@192.0.2.10:2222", "ssh_config:5"]
    );
    assert_eq!(
        row(&web1, "identity_file"),
        ["identity_file", "/keys/fleet", "ssh_config:12"]
    );
    let web2 = block("web-2");
    // The host's own keys win too.
    assert_eq!(
        row(&web2, "address"),
        ["address", "10.0.0.2", "inventory.toml:8:31"]
    );
    assert_eq!(row(&web2, "port"), ["port", "2022", "inventory.toml:8:50"]);
    // StrictHostKeyChecking no is named, once, with the hosts it covers.
    assert_eq!(
        output.stderr.matches("StrictHostKeyChecking").count(),
        1,
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("ssh_config for web-1, web-2: ssh_config:13: StrictHostKeyChecking no"),
        "{}",
        output.stderr
    );
}

#[test]
fn a_bad_ssh_config_line_is_refused_with_file_line_and_column() {
    let scratch = Scratch::new()
        .file("inventory.toml", INVENTORY)
        .file("playbook.toml", PLAYBOOK)
        .file(
            "ssh_config",
            &SSH_CONFIG.replace("Port 2200", "Port twenty"),
        );
    let output = scratch.run(&["validate", "-i", "inventory.toml", "-p", "playbook.toml"]);
    assert_eq!(output.code, 2, "{}", output.stderr);
    assert!(
        output.stderr.contains("ssh_config:4:8"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("ssh_config = false"),
        "{}",
        output.stderr
    );
}

#[test]
fn ssh_config_false_reads_none() {
    let scratch = Scratch::new()
        .file(
            "inventory.toml",
            &INVENTORY.replace("ssh_config = \"ssh_config\"", "ssh_config = false"),
        )
        .file("playbook.toml", PLAYBOOK)
        .file("ssh_config", "this is not ssh_config\n");
    let output = validate_verbose(&scratch);
    assert_eq!(output.code, 0, "{}", output.stderr);
    // Without ssh_config a host without an address is dialled by name.
    assert!(
        output.stdout.lines().any(|line| {
            line.split_whitespace().collect::<Vec<_>>()
                == ["address", "web-1", "the", "host's", "name"]
        }),
        "{}",
        output.stdout
    );
}
