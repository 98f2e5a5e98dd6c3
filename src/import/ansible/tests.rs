use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory of its own under the system's temp dir, removed when the
/// test ends (passes or panics).
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fleetroll-import-ansible-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch { dir }
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.dir.join(relative);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create directories");
        fs::write(&path, text).expect("write a scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn prefix(prefix: &str) -> ZoneFrom {
    ZoneFrom::GroupPrefix(prefix.to_owned())
}

/// The generated TOML, parsed (it must parse).
fn parsed(imported: &Imported) -> toml::Table {
    toml::from_str(&imported.toml)
        .unwrap_or_else(|e| panic!("the output is not TOML: {e}\n{}", imported.toml))
}

/// Every host table of the inventory, with its zone.
fn hosts(table: &toml::Table) -> Vec<(String, toml::Table)> {
    let mut found = Vec::new();
    for (zone, body) in table["zones"].as_table().expect("[zones]") {
        for host in body["hosts"].as_array().expect("hosts = [...]") {
            found.push((zone.clone(), host.as_table().expect("a host table").clone()));
        }
    }
    found
}

fn host(table: &toml::Table, name: &str) -> toml::Table {
    hosts(table)
        .into_iter()
        .map(|(_, host)| host)
        .find(|host| host["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no host {name} in {table:#?}"))
}

fn zone_of(table: &toml::Table, name: &str) -> String {
    hosts(table)
        .into_iter()
        .find(|(_, host)| host["name"].as_str() == Some(name))
        .map(|(zone, _)| zone)
        .unwrap_or_else(|| panic!("no host {name}"))
}

fn zone_hosts(table: &toml::Table, zone: &str) -> Vec<String> {
    hosts(table)
        .into_iter()
        .filter(|(z, _)| z == zone)
        .map(|(_, host)| host["name"].as_str().expect("a name").to_owned())
        .collect()
}

fn var(host: &toml::Table, name: &str) -> Option<toml::Value> {
    host.get("vars")?.as_table()?.get(name).cloned()
}

fn text(value: &str) -> toml::Value {
    toml::Value::String(value.to_owned())
}

fn has_warning(imported: &Imported, parts: &[&str]) -> bool {
    imported
        .warnings
        .iter()
        .any(|w| parts.iter().all(|part| w.contains(part)))
}

fn assert_warning(imported: &Imported, parts: &[&str]) {
    assert!(
        has_warning(imported, parts),
        "no warning with {parts:?} in {:#?}",
        imported.warnings
    );
}

// The inventory of Ansible's "How to build your inventory" page, in both
// of the formats it shows: ungrouped hosts, ranges (zero-padded, letters,
// a stride), children, group variables.
const DOCS_INI: &str = "\
# Ungrouped hosts come before the first section
mail.example.com ansible_host=192.0.2.5

[webservers]
www[01:20].example.com http_port=80

[dbservers]
db-[a:f].example.com

[canary]
www[01:20:5].example.com

[az_east]
www[01:10].example.com
db-[a:c].example.com

[az_west]
www[11:20].example.com
db-[d:f].example.com

[production:children]
webservers
dbservers

[webservers:vars]
ntp_server=ntp.web.example.com
max_clients=200

[production:vars]
ntp_server=ntp.example.com
proxy=proxy.example.com

[all:vars]
ansible_user=deploy
ansible_ssh_private_key_file=~/.ssh/deploy_ed25519
env=prod
";

// Top-level groups without `all:`, as the page's first YAML example.
const DOCS_YAML: &str = "\
ungrouped:
  hosts:
    mail.example.com:
      ansible_host: 192.0.2.5
webservers:
  hosts:
    www[01:20].example.com:
      http_port: 80
  vars:
    ntp_server: ntp.web.example.com
    max_clients: 200
dbservers:
  hosts:
    db-[a:f].example.com:
canary:
  hosts:
    www[01:20:5].example.com:
az_east:
  hosts:
    www[01:10].example.com:
    db-[a:c].example.com:
az_west:
  hosts:
    www[11:20].example.com:
    db-[d:f].example.com:
production:
  children:
    webservers:
    dbservers:
  vars:
    ntp_server: ntp.example.com
    proxy: proxy.example.com
all:
  vars:
    ansible_user: deploy
    ansible_ssh_private_key_file: ~/.ssh/deploy_ed25519
    env: prod
";

/// `prefix01.example.com` … for the numbers given.
fn www(numbers: impl IntoIterator<Item = u32>) -> Vec<String> {
    numbers
        .into_iter()
        .map(|n| format!("www{n:02}.example.com"))
        .collect()
}

#[test]
fn ini_and_yaml_versions_of_one_inventory_give_the_same_fleet() {
    let scratch = Scratch::new("same-fleet");
    let ini = import(&scratch.write("ini/hosts.ini", DOCS_INI), &prefix("az_")).unwrap();
    let yaml = import(&scratch.write("yaml/hosts.yml", DOCS_YAML), &prefix("az_")).unwrap();
    let (ini_table, yaml_table) = (parsed(&ini), parsed(&yaml));
    for key in ["defaults", "vars", "zones"] {
        assert_eq!(ini_table.get(key), yaml_table.get(key), "[{key}] differs");
    }
    assert_eq!(ini.warnings, yaml.warnings);
    assert_eq!((ini.hosts, ini.zones), (27, 3));
    assert_eq!((yaml.hosts, yaml.zones), (27, 3));

    let table = ini_table;
    let mut east = www(1..=10);
    east.extend(["db-a", "db-b", "db-c"].map(|d| format!("{d}.example.com")));
    assert_eq!(zone_hosts(&table, "east"), east);
    let mut west = www(11..=20);
    west.extend(["db-d", "db-e", "db-f"].map(|d| format!("{d}.example.com")));
    assert_eq!(zone_hosts(&table, "west"), west);
    // The ungrouped host is in no az_ group: unzoned, and said so.
    assert_eq!(zone_hosts(&table, "unzoned"), ["mail.example.com"]);
    assert_warning(
        &ini,
        &["host `mail.example.com` in no group starting with `az_`"],
    );
    assert_eq!(table["defaults"]["user"].as_str(), Some("deploy"));
    assert_eq!(
        table["defaults"]["identity_file"].as_str(),
        Some("~/.ssh/deploy_ed25519")
    );
    assert_eq!(table["vars"]["env"].as_str(), Some("prod"));
    assert_eq!(
        host(&table, "mail.example.com")["address"].as_str(),
        Some("192.0.2.5")
    );
    // The child group (webservers) wins over its parent (production).
    let www02 = host(&table, "www02.example.com");
    assert_eq!(var(&www02, "ntp_server"), Some(text("ntp.web.example.com")));
    assert_eq!(var(&www02, "proxy"), Some(text("proxy.example.com")));
    assert_eq!(var(&www02, "http_port"), Some(toml::Value::Integer(80)));
    assert_eq!(var(&www02, "max_clients"), Some(toml::Value::Integer(200)));
    let db = host(&table, "db-f.example.com");
    assert_eq!(var(&db, "ntp_server"), Some(text("ntp.example.com")));
    assert_eq!(var(&db, "http_port"), None);
    // The `all` group's variable is in [vars], not repeated per host.
    assert_eq!(var(&db, "env"), None);
    // Each host's groups are in the comment above it; the stride picked
    // www01, 06, 11 and 16 for canary.
    for (name, groups) in [
        (
            "www06.example.com",
            "az_east, canary, production, webservers",
        ),
        ("www07.example.com", "az_east, production, webservers"),
        (
            "www16.example.com",
            "az_west, canary, production, webservers",
        ),
        ("db-d.example.com", "az_west, dbservers, production"),
        ("mail.example.com", "ungrouped"),
    ] {
        let expected = format!("# groups: {groups}\n    {{ name = \"{name}\"");
        assert!(ini.toml.contains(&expected), "{expected}\n{}", ini.toml);
    }
}

#[test]
fn host_ranges_expand_as_ansible_expands_them() {
    let names = |pattern: &str| host_pattern(pattern).unwrap().0;
    assert_eq!(
        names("web[01:03].example.com"),
        [
            "web01.example.com",
            "web02.example.com",
            "web03.example.com"
        ]
    );
    assert_eq!(names("web[1:3]"), ["web1", "web2", "web3"]);
    assert_eq!(names("db-[a:c]"), ["db-a", "db-b", "db-c"]);
    assert_eq!(names("node[0:10:5]"), ["node0", "node5", "node10"]);
    assert_eq!(names("n[:2]"), ["n0", "n1", "n2"]);
    assert_eq!(names("r[1:2]-[a:b]"), ["r1-a", "r1-b", "r2-a", "r2-b"]);
    assert_eq!(
        host_pattern("web[1:2]:2222").unwrap(),
        (vec!["web1".into(), "web2".into()], Some(2222))
    );
    assert_eq!(
        host_pattern("web1:2222").unwrap(),
        (vec!["web1".into()], Some(2222))
    );
    assert_eq!(
        host_pattern("2001:db8::1").unwrap(),
        (vec!["2001:db8::1".into()], None)
    );
    assert_eq!(
        host_pattern("[2001:db8::1]:22").unwrap(),
        (vec!["2001:db8::1".into()], Some(22))
    );
    for bad in [
        "web[01:3]",
        "web[3:1]",
        "web[1]",
        "web[1:",
        "web[1:2:0]",
        "web[:]",
        "web[a:3]",
        "web1:",
        "web1:x",
    ] {
        assert!(host_pattern(bad).is_err(), "{bad} should be refused");
    }
    assert!(
        host_pattern("h[0:999999]")
            .unwrap_err()
            .contains("more than")
    );
}

#[test]
fn a_bad_range_or_bad_yaml_is_an_error_naming_file_line_and_column() {
    let scratch = Scratch::new("bad-input");
    let ini = scratch.write(
        "hosts.ini",
        "[web]\nok1\n  web[01:3].example.com http_port=80\n",
    );
    let error = import(&ini, &ZoneFrom::None).unwrap_err();
    assert!(
        matches!(
            &error,
            ImportError::Parse {
                line: 3,
                column: Some(3),
                ..
            }
        ),
        "{error:?}"
    );
    // Two groups that name the same zone do not conflict.
    let agreeing = import_str(
        "[az_eu1]\nweb1\n\n[az-eu1]\nweb1\n",
        Path::new("/nonexistent/hosts.ini"),
        &prefix("az"),
    )
    .unwrap();
    assert_eq!(zone_of(&parsed(&agreeing), "web1"), "eu1");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{}:3:3: ", ini.display())),
        "{message}"
    );
    assert!(message.contains("zero-padded"), "{message}");

    let yaml = scratch.write("hosts.yml", "all:\n  hosts:\n    web[a:3]:\n");
    let error = import(&yaml, &ZoneFrom::None).unwrap_err();
    assert!(
        matches!(
            &error,
            ImportError::Parse {
                line: 3,
                column: Some(5),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("web[a:3]"), "{error}");

    let broken = scratch.write(
        "broken.yml",
        "all:\n  hosts:\n    web1: {ansible_port: 22\n",
    );
    let error = import(&broken, &ZoneFrom::None).unwrap_err();
    let ImportError::Parse {
        path,
        line,
        column,
        message,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(path, &broken);
    assert!(*line >= 3 && column.is_some(), "{error}");
    assert!(message.starts_with("invalid YAML"), "{message}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}:{line}:", broken.display()))
    );

    let duplicate = scratch.write("dup.yml", "all:\n  hosts:\n    web1:\n    web1:\n");
    let error = import(&duplicate, &ZoneFrom::None).unwrap_err();
    assert!(
        matches!(&error, ImportError::Parse { line: 4, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("duplicated key"), "{error}");

    // A broken vars file is named, not the inventory.
    let dir = Scratch::new("bad-group-vars");
    let inventory = dir.write("hosts", "[web]\nweb1\n");
    let vars = dir.write("group_vars/web.yml", "a: 1\nb: [\n");
    let error = import(&inventory, &ZoneFrom::None).unwrap_err();
    assert!(
        matches!(&error, ImportError::Parse { path, .. } if *path == vars),
        "{error:?}"
    );
}

#[test]
fn ini_mistakes_are_errors_that_say_what_to_do() {
    let cases = [
        ("[web]\nweb1\n[db:vars]\nx=1\n", 3, "add one"),
        (
            "[web]\nweb1\n[all:children]\nweb\nmissing\n",
            5,
            "no [missing] section",
        ),
        ("[web servers]\nweb1\n", 1, "not a section header"),
        ("[web:hosts]\nweb1\n", 1, "unknown type"),
        ("[web]\nweb1 port\n", 2, "NAME=VALUE"),
        ("[web:vars]\njust-a-word\n[web]\n", 2, "NAME=VALUE"),
        ("ansible_user=root\n", 1, "is a variable, not a host"),
        ("[web]\nweb1 a=\"unclosed\n", 2, "never closed"),
    ];
    for (text, line, hint) in cases {
        let error =
            import_str(text, Path::new("/nonexistent/hosts.ini"), &ZoneFrom::None).unwrap_err();
        assert!(
            matches!(&error, ImportError::Parse { line: l, .. } if *l == line),
            "{text:?}: {error:?}"
        );
        assert!(error.to_string().contains(hint), "{text:?}: {error}");
    }
    let looped = import_str(
        "[a:children]\nb\n[b:children]\na\n",
        Path::new("/nonexistent/hosts"),
        &ZoneFrom::None,
    )
    .unwrap_err();
    assert!(matches!(looped, ImportError::Invalid { .. }), "{looped:?}");
    assert!(looped.to_string().contains("`a`"), "{looped}");
}

#[test]
fn what_is_not_a_static_inventory_is_refused_with_the_way_out() {
    let path = Path::new("/nonexistent/inventory");
    let script = import_str(
        "#!/usr/bin/env python3\nprint('{}')\n",
        path,
        &ZoneFrom::None,
    )
    .unwrap_err();
    assert!(
        matches!(script, ImportError::Unsupported { .. }),
        "{script:?}"
    );
    assert!(
        script.to_string().contains("ansible-inventory -i"),
        "{script}"
    );

    let plugin = import_str(
        "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n",
        Path::new("/nonexistent/aws_ec2.yml"),
        &ZoneFrom::None,
    )
    .unwrap_err();
    assert!(plugin.to_string().contains("--list --yaml"), "{plugin}");

    let listed = import_str(
        "{\"_meta\": {\"hostvars\": {}}, \"all\": {\"children\": []}}",
        Path::new("/x/list.json"),
        &ZoneFrom::None,
    )
    .unwrap_err();
    assert!(
        matches!(listed, ImportError::Unsupported { .. }),
        "{listed:?}"
    );

    let vaulted =
        import_str("$ANSIBLE_VAULT;1.1;AES256\n6638\n", path, &ZoneFrom::None).unwrap_err();
    assert!(
        vaulted.to_string().contains("ansible-vault decrypt"),
        "{vaulted}"
    );

    for empty in ["", "# nothing\n", "[web]\n"] {
        let error = import_str(empty, path, &ZoneFrom::None).unwrap_err();
        assert!(
            matches!(error, ImportError::NoHosts { .. }),
            "{empty:?}: {error:?}"
        );
    }
    let missing = Path::new("/nonexistent/fleetroll-import-test/hosts.ini");
    let error = import(missing, &ZoneFrom::None).unwrap_err();
    assert!(matches!(error, ImportError::Read { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("/nonexistent/fleetroll-import-test/hosts.ini"),
        "{error}"
    );

    let error = import_str("web1\n", path, &prefix("")).unwrap_err();
    assert!(matches!(error, ImportError::ZoneFrom(_)), "{error:?}");
}

#[test]
fn host_vars_and_group_vars_files_and_directories_are_read() {
    let scratch = Scratch::new("vars-files");
    let inventory = scratch.write(
        "inventory/hosts.yml",
        "all:\n  children:\n    web:\n      hosts:\n        web[1:3]:\n    db:\n      hosts:\n        db1:\n",
    );
    scratch.write("inventory/group_vars/all.yml", "region: eu\n");
    scratch.write(
        "inventory/group_vars/web/10-base.yml",
        "http_port: 80\ntier: frontend\n",
    );
    scratch.write(
        "inventory/group_vars/web/20-override.yaml",
        "http_port: 8080\n",
    );
    scratch.write("inventory/group_vars/web/sub/30-more.yml", "cache: on\n");
    scratch.write("inventory/group_vars/web/.hidden.yml", "tier: hidden\n");
    scratch.write("inventory/group_vars/web/notes.txt", "tier: txt\n");
    scratch.write("inventory/group_vars/web/backup.yml~", "tier: backup\n");
    // A directory comes first: Ansible does not read web.yml beside it.
    scratch.write("inventory/group_vars/web.yml", "tier: shadowed\n");
    scratch.write(
        "inventory/group_vars/db.json",
        "{\"engine\": \"postgres\", \"pool\": 20}\n",
    );
    scratch.write("inventory/host_vars/web1.yml", "---\nhttp_port: 9090\n");
    scratch.write("inventory/host_vars/web2", "ansible_host: 10.0.0.2\n");
    scratch.write(
        "inventory/host_vars/web3.json",
        "{\"ansible_port\": 2203}\n",
    );
    scratch.write("inventory/host_vars/ghost.yml", "x: 1\n");
    scratch.write("inventory/host_vars/db1.yml", "");

    let imported = import(&inventory, &ZoneFrom::None).unwrap();
    let table = parsed(&imported);
    assert_eq!(table["vars"]["region"].as_str(), Some("eu"));
    let web1 = host(&table, "web1");
    assert_eq!(var(&web1, "http_port"), Some(toml::Value::Integer(9090)));
    assert_eq!(var(&web1, "tier"), Some(text("frontend")));
    assert_eq!(var(&web1, "cache"), Some(toml::Value::Boolean(true)));
    let web2 = host(&table, "web2");
    assert_eq!(web2["address"].as_str(), Some("10.0.0.2"));
    assert_eq!(var(&web2, "http_port"), Some(toml::Value::Integer(8080)));
    assert_eq!(host(&table, "web3")["port"].as_integer(), Some(2203));
    let db1 = host(&table, "db1");
    assert_eq!(var(&db1, "engine"), Some(text("postgres")));
    assert_eq!(var(&db1, "pool"), Some(toml::Value::Integer(20)));
    assert_eq!(var(&db1, "tier"), None);
    for never in ["hidden", "txt", "backup", "shadowed"] {
        assert!(
            !imported.toml.contains(&format!("\"{never}\"")),
            "{never}: {}",
            imported.toml
        );
    }
    assert_warning(
        &imported,
        &[
            "group_vars/web.yml is not read",
            "group_vars/web comes first",
        ],
    );
    assert_warning(
        &imported,
        &["host_vars/ghost.yml is not read", "no host `ghost`"],
    );
}

#[test]
fn variables_follow_ansibles_precedence() {
    let scratch = Scratch::new("precedence");
    let inventory = scratch.write(
        "hosts",
        "\
[parent:children]
child

[child]
h1 inline_host=inline

[alpha]
h1

[beta]
h1

[gamma]
h1

[other]
h2

[all:vars]
level=all
all_file=inline-all

[parent:vars]
level=parent

[child:vars]
level=child
inline_host=group
host_file=group
file_level=inline
all_file=inline-child

[alpha:vars]
ansible_group_priority=10
prio=alpha

[beta:vars]
same_depth=beta
prio=beta

[gamma:vars]
same_depth=gamma
",
    );
    scratch.write("group_vars/child.yml", "file_level: file\n");
    scratch.write("group_vars/all.yml", "all_file: file\n");
    scratch.write("host_vars/h1.yml", "host_file: file\n");
    let imported = import(&inventory, &ZoneFrom::None).unwrap();
    let table = parsed(&imported);
    let h1 = host(&table, "h1");
    // A child group over its parent over `all`.
    assert_eq!(var(&h1, "level"), Some(text("child")));
    // Same depth: by name, the later wins...
    assert_eq!(var(&h1, "same_depth"), Some(text("gamma")));
    // ...unless ansible_group_priority says otherwise.
    assert_eq!(var(&h1, "prio"), Some(text("alpha")));
    // Host variables over groups; host_vars over inline host variables.
    assert_eq!(var(&h1, "inline_host"), Some(text("inline")));
    assert_eq!(var(&h1, "host_file"), Some(text("file")));
    // A group_vars file over the same group's inline variables, and (as in
    // Ansible) group_vars/all over a child group's inline variables.
    assert_eq!(var(&h1, "file_level"), Some(text("file")));
    assert_eq!(table["vars"]["all_file"].as_str(), Some("file"));
    assert_eq!(var(&h1, "all_file"), None);
    // h2 has nothing of its own: [vars] carries `level = "all"`.
    assert_eq!(table["vars"]["level"].as_str(), Some("all"));
    assert!(host(&table, "h2").get("vars").is_none());
    // The priority is used, not reported as lost.
    assert!(
        !has_warning(&imported, &["ansible_group_priority"]),
        "{:#?}",
        imported.warnings
    );
}

#[test]
fn jump_hosts_come_from_ssh_arguments() {
    let imported = import_str(
        r#"
[bastioned]
j1 ansible_ssh_common_args="-J ops@bastion.example.com:2222"
j2 ansible_ssh_common_args="-o ProxyJump=hop1,hop2"
j3 ansible_ssh_extra_args='-o "ProxyJump gw.example.com" -C'
j4 ansible_ssh_common_args='-o ProxyCommand="ssh -W %h:%p -q -p 2200 jumper@gw2.example.com"'
j5 ansible_ssh_common_args='-o ProxyCommand="nc -X connect -x proxy:3128 %h %p"'
j6 ansible_ssh_common_args="-oProxyJump=first.example.com" ansible_ssh_extra_args="-J second.example.com"
j7

[gatewayed]
g1

[gatewayed:vars]
ansible_ssh_common_args='-o ProxyCommand="ssh -W %h:%p -q user@gateway.example.com"'
"#,
        Path::new("/nonexistent/hosts.ini"),
        &ZoneFrom::None,
    )
    .unwrap();
    let table = parsed(&imported);
    let jump = |name: &str| {
        host(&table, name)
            .get("jump")
            .and_then(|j| j.as_str().map(str::to_owned))
    };
    assert_eq!(jump("j1").as_deref(), Some("ops@bastion.example.com:2222"));
    assert_eq!(jump("j2").as_deref(), Some("hop1,hop2"));
    assert_eq!(jump("j3").as_deref(), Some("gw.example.com"));
    assert_eq!(jump("j4").as_deref(), Some("jumper@gw2.example.com:2200"));
    assert_eq!(jump("j5"), None);
    assert_eq!(jump("j6").as_deref(), Some("first.example.com"));
    assert_eq!(jump("j7"), None);
    assert_eq!(jump("g1").as_deref(), Some("user@gateway.example.com"));
    assert_warning(&imported, &["host `j3`", "`-C`"]);
    assert_warning(&imported, &["host `j5`", "ProxyCommand"]);
    assert!(!has_warning(&imported, &["j4"]), "{:#?}", imported.warnings);
    assert!(
        !has_warning(&imported, &["gatewayed"]),
        "{:#?}",
        imported.warnings
    );
}

#[test]
fn settings_every_host_shares_go_to_defaults() {
    let imported = import_str(
        "\
[web]
w1 ansible_port=2222 ansible_user=admin
w2 ansible_port=2222
w3 ansible_port=22 ansible_host=10.0.0.3

[web:vars]
ansible_user=deploy
ansible_become=yes
ansible_private_key_file=/keys/deploy
ansible_ssh_common_args='-J bastion'
",
        Path::new("/nonexistent/hosts.ini"),
        &prefix("web"),
    )
    .unwrap();
    let table = parsed(&imported);
    let defaults = table["defaults"].as_table().unwrap();
    assert_eq!(defaults.get("sudo"), Some(&toml::Value::Boolean(true)));
    assert_eq!(defaults["identity_file"].as_str(), Some("/keys/deploy"));
    assert_eq!(defaults["jump"].as_str(), Some("bastion"));
    assert!(
        defaults.get("user").is_none() && defaults.get("port").is_none(),
        "{defaults:?}"
    );
    let w1 = host(&table, "w1");
    assert_eq!(
        (w1["user"].as_str(), w1["port"].as_integer()),
        (Some("admin"), Some(2222))
    );
    assert!(
        w1.get("sudo").is_none() && w1.get("identity_file").is_none(),
        "{w1:?}"
    );
    let w3 = host(&table, "w3");
    assert_eq!(
        (w3["user"].as_str(), w3["port"].as_integer()),
        (Some("deploy"), Some(22))
    );
    assert_eq!(w3["address"].as_str(), Some("10.0.0.3"));

    // A become method other than sudo turns sudo off, and says so.
    let su = import_str(
        "[db]\nd1 ansible_become=true ansible_become_method=su\nd2 ansible_become=true\n",
        Path::new("/nonexistent/hosts.ini"),
        &ZoneFrom::None,
    )
    .unwrap();
    let table = parsed(&su);
    assert!(table.get("defaults").is_none(), "{}", su.toml);
    assert!(host(&table, "d1").get("sudo").is_none());
    assert_eq!(
        host(&table, "d2").get("sudo"),
        Some(&toml::Value::Boolean(true))
    );
    assert_warning(&su, &["host `d1`", "ansible_become_method", "`su`"]);
}

const ZONED_INI: &str = "\
[az_eu1]
a1
a2

[az_eu2]
b1

[az_eu:children]
az_eu1
az_eu2

[az_]
c1

[misc]
c1
d1
";

#[test]
fn zones_from_a_group_prefix() {
    for given in ["az_", "az"] {
        let imported = import_str(
            ZONED_INI,
            Path::new("/nonexistent/hosts.ini"),
            &prefix(given),
        )
        .unwrap();
        let table = parsed(&imported);
        // The prefix is removed, and the `_` after it; of the nested
        // az_eu ⊃ az_eu1 the inner group names the zone.
        assert_eq!(zone_hosts(&table, "eu1"), ["a1", "a2"], "{given}");
        assert_eq!(zone_hosts(&table, "eu2"), ["b1"], "{given}");
        // `az_` alone is no zone name: c1 and d1 are unzoned, said so.
        assert_eq!(zone_hosts(&table, "unzoned"), ["c1", "d1"], "{given}");
        assert_eq!(imported.zones, 3);
        assert_warning(&imported, &["hosts `c1`, `d1`", "unzoned"]);
        // `unzoned` comes last.
        let eu2 = imported.toml.find("[zones.eu2]").unwrap();
        let unzoned = imported.toml.find("[zones.unzoned]").unwrap();
        assert!(imported.toml.find("[zones.eu1]").unwrap() < eu2 && eu2 < unzoned);
        assert!(imported.toml.contains(&format!("starts with `{given}`")));
    }
}

#[test]
fn a_host_in_two_zone_groups_is_an_error_naming_both() {
    let error = import_str(
        "[az_eu1]\nweb1\nweb2\n\n[az_eu2]\nweb2\n",
        Path::new("/nonexistent/hosts.ini"),
        &prefix("az_"),
    )
    .unwrap_err();
    let ImportError::ZoneConflict {
        host,
        first,
        second,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(
        (host.as_str(), first.as_str(), second.as_str()),
        ("web2", "az_eu1", "az_eu2")
    );
    // Two groups that name the same zone do not conflict.
    let agreeing = import_str(
        "[az_eu1]\nweb1\n\n[az-eu1]\nweb1\n",
        Path::new("/nonexistent/hosts.ini"),
        &prefix("az"),
    )
    .unwrap();
    assert_eq!(zone_of(&parsed(&agreeing), "web1"), "eu1");
    let message = error.to_string();
    assert!(
        message.contains("`az_eu1`") && message.contains("`az_eu2`") && message.contains("`web2`"),
        "{message}"
    );
}

#[test]
fn zones_from_a_variable() {
    let imported = import_str(
        "\
all:
  children:
    web:
      vars:
        dc: fra1
      hosts:
        w1:
        w2:
          dc: ams1
        w3:
          dc: bad zone
    other:
      hosts:
        o1:
        o2:
          dc: 7
        o3:
          dc: eu.west
",
        Path::new("/nonexistent/hosts.yml"),
        &ZoneFrom::Var("dc".into()),
    )
    .unwrap();
    let table = parsed(&imported);
    assert_eq!(zone_of(&table, "w1"), "fra1");
    assert_eq!(zone_of(&table, "w2"), "ams1");
    assert_eq!(zone_of(&table, "o2"), "7");
    assert_eq!(zone_of(&table, "o3"), "eu.west");
    assert!(
        imported.toml.contains("\n[zones.\"eu.west\"]\n"),
        "{}",
        imported.toml
    );
    assert_eq!(zone_hosts(&table, "unzoned"), ["w3", "o1"]);
    assert_eq!((imported.hosts, imported.zones), (6, 5));
    assert_warning(&imported, &["host `w3`", "`bad zone`", "unzoned"]);
    assert_warning(&imported, &["host `o1`", "without the variable `dc`"]);
    // The variable stays a variable.
    assert_eq!(var(&host(&table, "w2"), "dc"), Some(text("ams1")));
}

#[test]
fn without_zone_from_every_host_is_in_one_zone_and_a_warning_says_so() {
    let imported = import_str(DOCS_INI, Path::new("/nonexistent/hosts"), &ZoneFrom::None).unwrap();
    let table = parsed(&imported);
    assert_eq!(
        table["zones"]
            .as_table()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["default"]
    );
    assert_eq!(zone_hosts(&table, "default").len(), 27);
    assert_eq!(imported.zones, 1);
    assert_warning(&imported, &["--zone-from", "`default`"]);
    assert!(imported.toml.contains("# Zones: none chosen"));
}

#[test]
fn lists_maps_and_unsupported_settings_are_listed_by_name() {
    let imported = import_str(
        r#"
[web]
w1 ansible_connection=local ansible_become_method=su
w2 ansible_connection=ssh

[web:vars]
ansible_python_interpreter=/usr/bin/python3
packages=['nginx', 'certbot']
limits={'nofile': 1024}
ports=80,443
empty=None
greeting="{{ inventory_hostname }}.internal"
2fast=yes
kept=value
"#,
        Path::new("/nonexistent/hosts.ini"),
        &ZoneFrom::None,
    )
    .unwrap();
    let table = parsed(&imported);
    for (name, why) in [
        ("packages", "is a list"),
        ("limits", "is a dict"),
        ("ports", "is a tuple"),
        ("empty", "is null (no value)"),
        ("greeting", "is a Jinja2 template"),
        ("2fast", "cannot name a fleetroll variable"),
        (
            "ansible_python_interpreter",
            "is an Ansible setting with no fleetroll equivalent",
        ),
    ] {
        let line = format!("group `web` (hosts.ini): `{name}` {why}");
        assert_warning(&imported, &[&line]);
        assert!(
            imported.toml.contains(&format!("# - {line}")),
            "{line}\n{}",
            imported.toml
        );
    }
    assert_warning(&imported, &["host `w1`", "`ansible_connection` is `local`"]);
    assert_warning(&imported, &["host `w1`", "`ansible_become_method` is `su`"]);
    // `ssh` is what fleetroll does anyway: nothing to report.
    assert!(!has_warning(&imported, &["w2"]), "{:#?}", imported.warnings);
    let w1 = host(&table, "w1");
    assert_eq!(var(&w1, "kept"), Some(text("value")));
    for gone in [
        "packages",
        "limits",
        "ports",
        "empty",
        "greeting",
        "2fast",
        "ansible_python_interpreter",
    ] {
        assert_eq!(var(&w1, gone), None, "{gone}");
    }
    // Values of lists and maps are not repeated in the messages.
    assert!(
        !imported
            .warnings
            .iter()
            .any(|w| w.contains("certbot") || w.contains("nofile"))
    );
}

#[test]
fn secrets_never_reach_the_output_or_the_warnings() {
    let scratch = Scratch::new("secrets");
    let inventory = scratch.write(
        "hosts.ini",
        "\
[web]
w1 ansible_password='Sup3rSecretPw!' db_token=tok-XYZ-123 ansible_ssh_pass=SshPass-000
w2

[web:vars]
ansible_become_password=BecomePw-456
api_key=KEY-789
db_password_file=/etc/db.pass
",
    );
    scratch.write(
        "group_vars/web.yml",
        "\
vault_db: !vault |
  $ANSIBLE_VAULT;1.1;AES256
  62313365396662343061393464336163VAULTBODY
ssh_private: \"-----BEGIN OPENSSH PRIVATE KEY-----\\nPRIVATEKEYBODY\\n-----END OPENSSH PRIVATE KEY-----\"
aws_secret_access_key: SecretAccess-321
",
    );
    scratch.write(
        "group_vars/all/vault.yml",
        "$ANSIBLE_VAULT;1.1;AES256\n3938VAULTFILEBODY\n",
    );
    scratch.write("group_vars/all/plain.yml", "site: example\n");
    let imported = import(&inventory, &ZoneFrom::None).unwrap();
    let table = parsed(&imported);
    let everything = format!("{}\n{}", imported.toml, imported.warnings.join("\n"));
    for secret in [
        "Sup3rSecretPw",
        "tok-XYZ-123",
        "SshPass-000",
        "BecomePw-456",
        "KEY-789",
        "VAULTBODY",
        "PRIVATEKEYBODY",
        "SecretAccess-321",
        "VAULTFILEBODY",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
    for name in [
        "ansible_password",
        "db_token",
        "ansible_ssh_pass",
        "ansible_become_password",
        "api_key",
        "vault_db",
        "ssh_private",
        "aws_secret_access_key",
    ] {
        assert_warning(&imported, &[&format!("`{name}`")]);
        assert!(
            imported.toml.contains(&format!("`{name}`")),
            "{name} not in the header"
        );
    }
    assert_warning(
        &imported,
        &["group_vars/all/vault.yml is encrypted with ansible-vault"],
    );
    // A path to a secret is no secret; the plain file beside the vault is read.
    assert_eq!(
        var(&host(&table, "w2"), "db_password_file"),
        Some(text("/etc/db.pass"))
    );
    assert_eq!(table["vars"]["site"].as_str(), Some("example"));
}

#[test]
fn ini_values_are_read_as_python_literals() {
    let cases: [(&str, Value); 24] = [
        ("80", Value::Int(80)),
        ("-3", Value::Int(-3)),
        ("1_000", Value::Int(1000)),
        ("0x1F", Value::Int(31)),
        ("1.5", Value::Float(1.5)),
        ("1e3", Value::Float(1000.0)),
        ("True", Value::Bool(true)),
        ("true", Value::Str("true".into())),
        ("None", Value::Null),
        ("'quoted'", Value::Str("quoted".into())),
        ("\"it's\"", Value::Str("it's".into())),
        ("'a' 'b'", Value::Str("ab".into())),
        ("'tab\\there'", Value::Str("tab\there".into())),
        ("0755", Value::Str("0755".into())),
        ("80,443", Value::Other("a tuple")),
        ("(1)", Value::Int(1)),
        ("()", Value::Other("a tuple")),
        ("[1, 'two']", Value::Other("a list")),
        ("[web1, web2]", Value::Str("[web1, web2]".into())),
        ("{'a': 1}", Value::Other("a dict")),
        ("{1, 2}", Value::Other("a set")),
        ("5 # five", Value::Int(5)),
        (
            "bar # not a comment here",
            Value::Str("bar # not a comment here".into()),
        ),
        ("", Value::Str(String::new())),
    ];
    for (text, expected) in cases {
        assert_eq!(python_value(text), expected, "{text:?}");
    }
    let words = |line: &str| -> Vec<String> {
        shell_words(line, true)
            .unwrap()
            .into_iter()
            .map(|w| w.text)
            .collect()
    };
    assert_eq!(
        words("web1 a=\"b c\" d='e f' g=h\\ i # comment"),
        ["web1", "a=b c", "d=e f", "g=h i"]
    );
    assert_eq!(words("web1 color=#fff"), ["web1", "color="]);
    assert_eq!(words("web1 x=\"a\\\"b\""), ["web1", "x=a\"b"]);
}

#[test]
fn yaml_scalars_are_read_as_ansible_reads_them() {
    let plain = |text: &str| scalar_value(text, ScalarStyle::Plain, None);
    assert_eq!(plain("yes"), Value::Bool(true));
    assert_eq!(plain("Off"), Value::Bool(false));
    assert_eq!(plain("~"), Value::Null);
    assert_eq!(plain("0755"), Value::Int(0o755));
    assert_eq!(plain("0x1F"), Value::Int(31));
    assert_eq!(plain("-1_000"), Value::Int(-1000));
    assert_eq!(plain("190:20:30"), Value::Int(685_230));
    assert_eq!(plain("1.5"), Value::Float(1.5));
    assert_eq!(plain("6.8523015e+5"), Value::Float(685_230.15));
    assert_eq!(plain("1e3"), Value::Str("1e3".into()));
    assert_eq!(plain("10.0.0.1"), Value::Str("10.0.0.1".into()));
    assert_eq!(
        scalar_value("yes", ScalarStyle::SingleQuoted, None),
        Value::Str("yes".into())
    );

    let imported = import_str(
        "\
all:
  hosts:
    h1: &base
      http_port: 8080
      enabled: yes
      quoted: \"yes\"
      mode: 0755
    h2:
      <<: *base
      http_port: 9090
      token_like: !vault |
        $ANSIBLE_VAULT;1.1;AES256
        3131VAULTBODY
",
        Path::new("/nonexistent/inventory.yaml"),
        &ZoneFrom::None,
    )
    .unwrap();
    let table = parsed(&imported);
    let h1 = host(&table, "h1");
    let h2 = host(&table, "h2");
    assert_eq!(var(&h1, "http_port"), Some(toml::Value::Integer(8080)));
    assert_eq!(var(&h2, "http_port"), Some(toml::Value::Integer(9090)));
    for h in [&h1, &h2] {
        assert_eq!(var(h, "enabled"), Some(toml::Value::Boolean(true)));
        assert_eq!(var(h, "quoted"), Some(text("yes")));
        assert_eq!(var(h, "mode"), Some(toml::Value::Integer(0o755)));
    }
    assert!(!imported.toml.contains("VAULTBODY"));
    assert_warning(&imported, &["host `h2`", "`token_like`", "ansible-vault"]);
}

#[test]
fn host_names_fleetroll_cannot_take_are_renamed_and_keep_their_address() {
    let imported = import_str(
        "\
all:
  hosts:
    web-1:
    \"2001:db8::10\":
    _private.example.com:
      ansible_host: 10.1.1.1
    \"web 1\":
",
        Path::new("/nonexistent/hosts.yml"),
        &ZoneFrom::None,
    )
    .unwrap();
    let table = parsed(&imported);
    let names: Vec<String> = hosts(&table)
        .into_iter()
        .map(|(_, h)| h["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["web-1", "2001-db8--10", "private.example.com", "web-1-2"]
    );
    assert_eq!(
        host(&table, "2001-db8--10")["address"].as_str(),
        Some("2001:db8::10")
    );
    assert_eq!(
        host(&table, "private.example.com")["address"].as_str(),
        Some("10.1.1.1")
    );
    assert!(host(&table, "web-1-2").get("address").is_none());
    assert_warning(&imported, &["`2001:db8::10`", "`2001-db8--10`"]);
    assert_warning(&imported, &["`web 1`", "`web-1-2`"]);
    assert!(
        imported
            .toml
            .contains("# Ansible host `2001:db8::10`; groups: ungrouped"),
        "{}",
        imported.toml
    );
}

#[test]
fn the_output_is_deterministic_and_explains_itself() {
    let scratch = Scratch::new("deterministic");
    let path = scratch.write("prod/hosts.ini", DOCS_INI);
    scratch.write("prod/group_vars/webservers/a.yml", "a: 1\n");
    scratch.write("prod/group_vars/webservers/b.yml", "b: 2\n");
    let first = import(&path, &prefix("az_")).unwrap();
    let second = import(&path, &prefix("az_")).unwrap();
    assert_eq!(first, second);
    let again = import_str(DOCS_INI, &path, &prefix("az_")).unwrap();
    assert_eq!(first, again);
    let header = format!(
        "# Generated from {} by `fleetroll import ansible`.\n",
        path.display()
    );
    assert!(first.toml.starts_with(&header), "{}", first.toml);
    assert!(
        first
            .toml
            .contains("# Zones: each host's group whose name starts with `az_`")
    );
    assert!(first.toml.contains("# Not carried over: nothing."));
    assert_eq!(first.warnings.len(), 1, "{:#?}", first.warnings);
    assert!(
        first
            .toml
            .contains(&format!("# Warnings (1):\n# - {}\n", first.warnings[0]))
    );
    // [defaults] and [vars] come before the zones.
    let defaults = first.toml.find("\n[defaults]\n").unwrap();
    let vars = first.toml.find("\n[vars]\n").unwrap();
    assert!(defaults < vars && vars < first.toml.find("\n[zones.").unwrap());
}

#[test]
fn zone_from_parses_group_and_var_forms() {
    assert_eq!("group:az_".parse(), Ok(ZoneFrom::GroupPrefix("az_".into())));
    assert_eq!("var:rack".parse(), Ok(ZoneFrom::Var("rack".into())));
    assert!(
        "rack"
            .parse::<ZoneFrom>()
            .unwrap_err()
            .contains("group:PREFIX")
    );
}
