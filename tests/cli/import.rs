//! `fleetroll import ansible`: inventories written the way the Ansible
//! docs show them become inventories `validate` accepts.

use crate::support::Scratch;

const INI: &str = "\
mail.example.com ansible_host=192.0.2.5

[webservers]
www[01:20].example.com http_port=80

[dbservers]
db-[a:f].example.com

[az_east]
www[01:10].example.com
db-[a:c].example.com

[az_west]
www[11:20].example.com
db-[d:f].example.com
mail.example.com

[production:children]
webservers
dbservers

[webservers:vars]
ntp_server=ntp.web.example.com
ansible_ssh_common_args='-o ProxyJump=ops@bastion.example.com:2222'

[all:vars]
ansible_user=deploy
ansible_ssh_private_key_file=keys/deploy_ed25519
ansible_become_password=hunter2-secret
packages=['nginx', 'ntp']
";

const YAML: &str = "\
all:
  vars:
    ansible_user: deploy
  children:
    web:
      hosts:
        web[1:4].example.com:
          rack: r1
        web5.example.com:
          rack: r2
          ansible_port: 2222
";

const PLAYBOOK: &str = "name = \"t\"\n[[steps]]\nrun = \"true\"\n";

#[test]
fn an_ini_inventory_with_ranges_children_and_vars_imports_and_validates() {
    let scratch = Scratch::new()
        .file("ansible/hosts.ini", INI)
        .file(
            "ansible/group_vars/dbservers.yml",
            "ansible_port: 2200\nbackup: nightly\n",
        )
        .file("playbook.toml", PLAYBOOK);
    let import = scratch.run(&[
        "import",
        "ansible",
        "ansible/hosts.ini",
        "--zone-from",
        "group:az_",
        "-o",
        "inventory.toml",
    ]);
    assert_eq!(import.code, 0, "{}", import.stderr);
    // What cannot be carried over is said, never its secret value.
    assert!(import.stderr.contains("packages"), "{}", import.stderr);
    assert!(
        import.stderr.contains("ansible_become_password"),
        "{}",
        import.stderr
    );
    let inventory = std::fs::read_to_string(scratch.path().join("inventory.toml")).unwrap();
    for text in [&import.stderr, &import.stdout, &inventory] {
        assert!(!text.contains("hunter2"), "a secret leaked:\n{text}");
    }
    assert!(
        inventory.contains("[zones.east]") && inventory.contains("[zones.west]"),
        "{inventory}"
    );
    assert!(
        inventory.contains("jump = \"ops@bastion.example.com:2222\""),
        "{inventory}"
    );
    assert!(inventory.contains("backup = \"nightly\""), "{inventory}");

    let validate = scratch.run(&["validate", "-i", "inventory.toml", "-p", "playbook.toml"]);
    assert_eq!(validate.code, 0, "{}\n{inventory}", validate.stderr);
    // 20 www, 6 db, mail: 27 hosts in the two zones.
    assert!(
        validate.stdout.contains("ok, 27 hosts in 2 zones"),
        "{}",
        validate.stdout
    );

    // The output file is never overwritten.
    let again = scratch.run(&[
        "import",
        "ansible",
        "ansible/hosts.ini",
        "-o",
        "inventory.toml",
    ]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("nothing was written"),
        "{}",
        again.stderr
    );
}

#[test]
fn a_yaml_inventory_imports_to_stdout_with_zones_from_a_variable() {
    let scratch = Scratch::new()
        .file("hosts.yml", YAML)
        .file("playbook.toml", PLAYBOOK);
    let import = scratch.run(&["import", "ansible", "hosts.yml", "--zone-from", "var:rack"]);
    assert_eq!(import.code, 0, "{}", import.stderr);
    assert!(import.stdout.contains("[zones.r1]"), "{}", import.stdout);
    std::fs::write(scratch.path().join("inventory.toml"), &import.stdout).unwrap();
    let validate = scratch.run(&["validate", "-i", "inventory.toml", "-p", "playbook.toml"]);
    assert_eq!(validate.code, 0, "{}\n{}", validate.stderr, import.stdout);
    assert!(
        validate.stdout.contains("ok, 5 hosts in 2 zones"),
        "{}",
        validate.stdout
    );
}

#[test]
fn a_broken_inventory_is_refused_naming_file_and_line() {
    let scratch = Scratch::new().file("hosts.ini", "[web]\nweb[05:01]\n");
    let import = scratch.run(&["import", "ansible", "hosts.ini"]);
    assert_eq!(import.code, 2, "{}", import.stderr);
    assert!(import.stderr.contains("hosts.ini:2"), "{}", import.stderr);
    let bad_zone = scratch.run(&["import", "ansible", "hosts.ini", "--zone-from", "rack"]);
    assert_eq!(bad_zone.code, 2, "{}", bad_zone.stderr);
}
