use super::*;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const CONFIG: &str = "/cfg/config";
const HOME: &str = "/home/tester";
const SSH: &str = "/usr/bin/ssh";

fn parse(text: &str) -> SshConfig {
    SshConfig::parse_str(text, Path::new(CONFIG), FileKind::User, Path::new(HOME))
        .unwrap_or_else(|error| panic!("config should parse: {error}"))
}

fn context() -> MatchContext {
    MatchContext {
        local_user: "me".to_owned(),
        user: None,
    }
}

fn resolve(text: &str, alias: &str) -> Resolved {
    parse(text).resolve(alias, &context())
}

fn value<T: Clone>(slot: &Option<Value<T>>) -> Option<T> {
    slot.as_ref().map(|value| value.value.clone())
}

fn values<T: Clone>(list: &[Value<T>]) -> Vec<T> {
    list.iter().map(|value| value.value.clone()).collect()
}

fn origin(file: impl Into<PathBuf>, line: usize) -> Origin {
    Origin {
        file: file.into(),
        line,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// The line, column and message of the syntax error `text` must produce.
fn syntax_error(text: &str) -> (usize, usize, String) {
    match SshConfig::parse_str(text, Path::new(CONFIG), FileKind::User, Path::new(HOME)) {
        Err(SshConfigError::Syntax {
            path,
            line,
            column,
            message,
        }) => {
            assert_eq!(path, Path::new(CONFIG));
            (line, column, message)
        }
        other => panic!("expected a syntax error for {text:?}, got {other:?}"),
    }
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped; unique per test, process and call.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fleetroll-ssh-config-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory should be created");
        Scratch { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("a file has a parent"))
            .expect("parent directory should be created");
        fs::write(&path, text).expect("scratch file should be written");
        path
    }

    /// `text` with `{dir}` replaced by this directory.
    fn fill(&self, text: &str) -> String {
        text.replace("{dir}", &self.dir.to_string_lossy())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Parser and resolver

#[test]
fn first_obtained_value_wins_and_keeps_its_origin() {
    let text = "Host web\n  User first\n  Port 2201\nHost *\n  User second\n  Port 22\n  HostName fallback.example\n";
    let web = resolve(text, "web");
    assert_eq!(value(&web.user), Some("first".to_owned()));
    assert_eq!(
        web.user.as_ref().map(|user| user.origin.clone()),
        Some(origin(CONFIG, 2))
    );
    assert_eq!(value(&web.port), Some(2201));
    assert_eq!(value(&web.host_name), Some("fallback.example".to_owned()));
    let db = resolve(text, "db");
    assert_eq!(value(&db.user), Some("second".to_owned()));
    assert_eq!(
        db.user.map(|user| user.origin.to_string()),
        Some("/cfg/config:5".to_owned())
    );
}

#[test]
fn settings_before_any_host_line_apply_to_every_alias() {
    let text = "User everyone\nHost special\n  User special\n  Port 2222\n";
    assert_eq!(
        value(&resolve(text, "special").user),
        Some("everyone".to_owned())
    );
    assert_eq!(value(&resolve(text, "special").port), Some(2222));
    assert_eq!(
        value(&resolve(text, "other").user),
        Some("everyone".to_owned())
    );
    assert_eq!(value(&resolve(text, "other").port), None);
}

#[test]
fn a_negated_host_pattern_excludes_the_block() {
    let text = "Host * !bastion\n  ProxyJump bastion\n";
    assert_eq!(
        value(&resolve(text, "web").proxy_jump),
        Some(strings(&["bastion"]))
    );
    assert_eq!(value(&resolve(text, "bastion").proxy_jump), None);
    let only_negated = "Host !bastion\n  User u\n";
    assert_eq!(value(&resolve(only_negated, "web").user), None);
}

#[test]
fn host_wildcards_match_whole_aliases_case_sensitively_as_ssh_does() {
    let text = "Host web?\n  Port 1\nHost Db*\n  Port 2\n";
    assert_eq!(value(&resolve(text, "web1").port), Some(1));
    assert_eq!(value(&resolve(text, "web10").port), None);
    assert_eq!(value(&resolve(text, "Db-main").port), Some(2));
    assert_eq!(value(&resolve(text, "db-main").port), None);
}

#[test]
fn identity_and_certificate_files_accumulate_without_duplicates() {
    let text = "IdentityFile ~/.ssh/a\nHost web\n  IdentityFile ~/.ssh/b\n  IdentityFile ~/.ssh/a\nHost *\n  IdentityFile ~/.ssh/c\n  CertificateFile ~/.ssh/a-cert.pub\n  CertificateFile ~/.ssh/a-cert.pub\n";
    let web = resolve(text, "web");
    assert_eq!(
        values(&web.identity_files),
        strings(&["~/.ssh/a", "~/.ssh/b", "~/.ssh/c"])
    );
    let lines: Vec<usize> = web
        .identity_files
        .iter()
        .map(|file| file.origin.line)
        .collect();
    assert_eq!(lines, [1, 3, 6]);
    assert_eq!(
        values(&web.certificate_files),
        strings(&["~/.ssh/a-cert.pub"])
    );
    assert_eq!(
        values(&resolve(text, "db").identity_files),
        strings(&["~/.ssh/a", "~/.ssh/c"])
    );
}

#[test]
fn equals_sign_separates_keyword_and_value() {
    let text =
        "HostName=h1.example\nUser = admin\nPort =2222\nIdentityFile= /k\nConnectTimeout\t=\t10\n";
    let resolved = resolve(text, "x");
    assert_eq!(value(&resolved.host_name), Some("h1.example".to_owned()));
    assert_eq!(value(&resolved.user), Some("admin".to_owned()));
    assert_eq!(value(&resolved.port), Some(2222));
    assert_eq!(values(&resolved.identity_files), strings(&["/k"]));
    assert_eq!(
        value(&resolved.connect_timeout),
        Some(Duration::from_secs(10))
    );
}

#[test]
fn quoted_arguments_may_contain_spaces_and_lose_their_quotes() {
    let text = "Host \"web one\" two\n  User \"deploy user\"\n  IdentityFile '/keys/my key'\n  IdentityAgent \"/run/a\\\"b\"\n  ProxyCommand ssh -W \"%h:%p\" bastion\n";
    let resolved = resolve(text, "web one");
    assert_eq!(value(&resolved.user), Some("deploy user".to_owned()));
    assert_eq!(values(&resolved.identity_files), strings(&["/keys/my key"]));
    assert_eq!(
        value(&resolved.identity_agent),
        Some("/run/a\"b".to_owned())
    );
    assert_eq!(
        value(&resolved.proxy_command),
        Some("ssh -W \"%h:%p\" bastion".to_owned()),
        "ProxyCommand is taken as written, like ssh"
    );
    assert_eq!(
        value(&resolve(text, "two").user),
        Some("deploy user".to_owned())
    );
    assert_eq!(value(&resolve(text, "web").user), None);
}

#[test]
fn keywords_are_case_insensitive() {
    let text = "HOSTNAME a.example\nuser b\npOrT 2\nidentityfile2 /k\nIdentitiesOnly YES\n";
    let resolved = resolve(text, "x");
    assert_eq!(value(&resolved.host_name), Some("a.example".to_owned()));
    assert_eq!(value(&resolved.user), Some("b".to_owned()));
    assert_eq!(value(&resolved.port), Some(2));
    assert_eq!(values(&resolved.identity_files), strings(&["/k"]));
    assert_eq!(value(&resolved.identities_only), Some(true));
}

#[test]
fn comments_blank_lines_and_trailing_whitespace_are_skipped() {
    let text = "  # a comment\n\n\t\nHost web # why\n  User u   \t\r\n  Port 7 # the port\n";
    let resolved = resolve(text, "web");
    assert_eq!(value(&resolved.user), Some("u".to_owned()));
    assert_eq!(value(&resolved.port), Some(7));
    assert_eq!(resolved.port.map(|port| port.origin.line), Some(6));
}

#[test]
fn unknown_keywords_are_ignored() {
    let resolved = resolve("SendEnv LANG\nControlMaster auto\nUser u\n", "x");
    assert_eq!(value(&resolved.user), Some("u".to_owned()));
    assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
}

#[test]
fn match_host_sees_the_host_name_obtained_so_far() {
    let text = "Host web\n  HostName web.prod.example\nMatch host *.prod.example\n  User produser\nMatch originalhost web\n  Port 2200\nMatch host web\n  IdentityFile /never\n";
    let web = resolve(text, "web");
    assert_eq!(value(&web.user), Some("produser".to_owned()));
    assert_eq!(value(&web.port), Some(2200));
    assert!(web.identity_files.is_empty(), "{:?}", web.identity_files);

    let expanded = "Host *\n  HostName %h.Internal\nMatch host DB.internal\n  User i\n";
    let db = resolve(expanded, "db");
    assert_eq!(value(&db.host_name), Some("db.internal".to_owned()));
    assert_eq!(value(&db.user), Some("i".to_owned()));
}

#[test]
fn match_user_sees_the_user_so_far_and_localuser_the_local_one() {
    let text = "Host web\n  User deploy\nMatch user deploy\n  Port 2022\nMatch localuser me\n  IdentityFile /me\nMatch user me,!nobody\n  ServerAliveCountMax 9\n";
    let web = resolve(text, "web");
    assert_eq!(value(&web.port), Some(2022));
    assert_eq!(values(&web.identity_files), strings(&["/me"]));
    assert_eq!(value(&web.server_alive_count_max), None);

    let other = resolve(text, "other");
    assert_eq!(value(&other.port), None);
    assert_eq!(value(&other.server_alive_count_max), Some(9));

    let fixed = MatchContext {
        local_user: "me".to_owned(),
        user: Some("fixed".to_owned()),
    };
    let web_fixed = parse(text).resolve("web", &fixed);
    assert_eq!(
        value(&web_fixed.user),
        None,
        "the caller's user wins over User"
    );
    assert_eq!(value(&web_fixed.port), None);
    assert_eq!(value(&web_fixed.server_alive_count_max), None);
}

#[test]
fn match_all_and_negated_criteria() {
    let text = "Match !host web*\n  User notweb\nMatch all\n  Port 1\n";
    assert_eq!(value(&resolve(text, "db").user), Some("notweb".to_owned()));
    assert_eq!(value(&resolve(text, "web1").user), None);
    assert_eq!(value(&resolve(text, "web1").port), Some(1));
}

#[test]
fn an_unsupported_match_criterion_disables_the_block_with_a_warning() {
    let text = "Match exec \"test -f /tmp/x\"\n  User execuser\nMatch host web* canonical\n  Port 2\nMatch host db* exec true\n  Port 3\nMatch tagged blue\n  HostName tagged.example\n";
    let web = resolve(text, "web1");
    assert_eq!(value(&web.user), None);
    assert_eq!(value(&web.port), None);
    assert_eq!(value(&web.host_name), None);
    assert_eq!(web.warnings.len(), 3, "{:?}", web.warnings);
    assert!(
        web.warnings[0].starts_with("/cfg/config:1: `Match exec test -f /tmp/x`"),
        "{}",
        web.warnings[0]
    );
    assert!(
        web.warnings[1].starts_with("/cfg/config:3: `Match canonical`"),
        "{}",
        web.warnings[1]
    );
    assert!(
        web.warnings[2].starts_with("/cfg/config:7: `Match tagged blue`"),
        "{}",
        web.warnings[2]
    );

    let db = resolve(text, "db1");
    let lines: Vec<&str> = db
        .warnings
        .iter()
        .map(|w| w.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(lines, ["/cfg/config:1", "/cfg/config:5", "/cfg/config:7"]);
}

#[test]
fn include_expands_a_glob_in_sorted_order_skipping_dot_files() {
    let scratch = Scratch::new("include-glob");
    scratch.write(
        "conf.d/20-b.conf",
        "Host web\n  User from-b\n  Port 2020\n  IdentityFile /b\n",
    );
    scratch.write("conf.d/10-a.conf", "Host web\n  User from-a\n  Port 1010\n");
    scratch.write("conf.d/.hidden.conf", "Host web\n  HostName hidden\n");
    scratch.write("conf.d/notes.txt", "Host web\n  HostKeyAlias notes\n");
    let text = scratch.fill("Include {dir}/conf.d/*.conf\nHost *\n  User main\n");
    let web = resolve(&text, "web");
    assert_eq!(value(&web.user), Some("from-a".to_owned()));
    assert_eq!(
        web.user.map(|user| user.origin),
        Some(origin(scratch.path("conf.d/10-a.conf"), 2))
    );
    assert_eq!(value(&web.port), Some(1010));
    assert_eq!(values(&web.identity_files), strings(&["/b"]));
    assert_eq!(value(&web.host_name), None);
    assert_eq!(value(&web.host_key_alias), None);
    assert_eq!(value(&resolve(&text, "db").user), Some("main".to_owned()));

    let every_component =
        scratch.fill("Include {dir}/c?nf.[a-d]/[12]0-*.conf {dir}/conf.d/notes.*\n");
    let web = resolve(&every_component, "web");
    assert_eq!(value(&web.user), Some("from-a".to_owned()));
    assert_eq!(value(&web.host_key_alias), Some("notes".to_owned()));
}

#[test]
fn an_include_inside_a_block_applies_only_while_the_block_does() {
    let scratch = Scratch::new("include-block");
    let included = scratch.write(
        "inc.conf",
        "User inc\nHost other\n  Port 9\n  HostName other.example\n",
    );
    let text = format!(
        "Host web\n  Include {}\n  Port 1\nHost *\n  Port 2\n",
        included.display()
    );
    let web = resolve(&text, "web");
    assert_eq!(value(&web.user), Some("inc".to_owned()));
    assert_eq!(
        value(&web.port),
        Some(1),
        "the block around Include goes on after it"
    );
    let other = resolve(&text, "other");
    assert_eq!(value(&other.user), None);
    assert_eq!(
        value(&other.port),
        Some(2),
        "a block in a file included from a non-matching block never applies"
    );
    assert_eq!(value(&other.host_name), None);
}

#[test]
fn a_relative_include_is_under_dot_ssh_for_user_files_and_etc_ssh_for_system_files() {
    let home = Scratch::new("include-relative");
    let name = format!("fleetroll-test-{}-extra.conf", std::process::id());
    home.write(&format!(".ssh/{name}"), "User relative\n");
    let text = format!("Include {name}\n");
    let user = SshConfig::parse_str(&text, Path::new(CONFIG), FileKind::User, &home.dir)
        .expect("user config parses");
    assert_eq!(
        value(&user.resolve("x", &context()).user),
        Some("relative".to_owned())
    );
    let system = SshConfig::parse_str(&text, Path::new(CONFIG), FileKind::System, &home.dir)
        .expect("system config parses");
    assert_eq!(value(&system.resolve("x", &context()).user), None);

    let home_dir = Path::new(HOME);
    assert_eq!(
        include_pattern("a.conf", FileKind::User, home_dir),
        Ok(PathBuf::from("/home/tester/.ssh/a.conf"))
    );
    assert_eq!(
        include_pattern("a.conf", FileKind::System, home_dir),
        Ok(PathBuf::from("/etc/ssh/a.conf"))
    );
    assert_eq!(
        include_pattern("~/x/*.conf", FileKind::User, home_dir),
        Ok(PathBuf::from("/home/tester/x/*.conf"))
    );
    assert_eq!(
        include_pattern("/abs.conf", FileKind::System, home_dir),
        Ok(PathBuf::from("/abs.conf"))
    );
    assert!(include_pattern("~/x.conf", FileKind::System, home_dir).is_err());
}

#[test]
fn a_missing_include_is_skipped() {
    let scratch = Scratch::new("include-missing");
    let text = scratch.fill("Include {dir}/missing.conf {dir}/nodir/*.conf\nUser u\n");
    assert_eq!(value(&resolve(&text, "x").user), Some("u".to_owned()));
}

#[test]
fn a_required_file_must_exist_and_an_optional_one_may_be_missing() {
    let scratch = Scratch::new("required");
    let missing = scratch.path("absent.conf");
    let required = ConfigFile {
        path: missing.clone(),
        kind: FileKind::User,
        required: true,
    };
    let error = SshConfig::load(&[required], &scratch.dir).expect_err("a required file must exist");
    assert!(
        matches!(&error, SshConfigError::Missing { path } if *path == missing),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&*missing.to_string_lossy()),
        "{error}"
    );

    let present = scratch.write("present.conf", "User from-present\n");
    let files = [
        ConfigFile {
            path: missing,
            kind: FileKind::User,
            required: false,
        },
        ConfigFile {
            path: present.clone(),
            kind: FileKind::System,
            required: false,
        },
    ];
    let config = SshConfig::load(&files, &scratch.dir).expect("an optional file may be missing");
    let resolved = config.resolve("x", &context());
    assert_eq!(
        resolved.user.map(|user| user.origin),
        Some(origin(present, 1))
    );
}

#[test]
fn earlier_files_win_over_later_ones() {
    let scratch = Scratch::new("file-order");
    let user = scratch.write("user.conf", "Host web\n  Port 1\n");
    let system = scratch.write("system.conf", "Host *\n  Port 2\n  User sys\n");
    let files = [
        ConfigFile {
            path: user,
            kind: FileKind::User,
            required: true,
        },
        ConfigFile {
            path: system,
            kind: FileKind::System,
            required: true,
        },
    ];
    let resolved = SshConfig::load(&files, &scratch.dir)
        .expect("both files load")
        .resolve("web", &context());
    assert_eq!(value(&resolved.port), Some(1));
    assert_eq!(value(&resolved.user), Some("sys".to_owned()));
}

#[test]
fn include_recursion_stops_at_the_depth_limit() {
    let scratch = Scratch::new("include-loop");
    let looping = scratch.path("loop.conf");
    scratch.write(
        "loop.conf",
        &format!("User u\nInclude {}\n", looping.display()),
    );
    let file = ConfigFile {
        path: looping.clone(),
        kind: FileKind::User,
        required: true,
    };
    let error = SshConfig::load(&[file], &scratch.dir).expect_err("a self-include must fail");
    assert!(
        matches!(&error, SshConfigError::IncludeTooDeep { path, line: 2 } if *path == looping),
        "{error:?}"
    );
}

#[cfg(unix)]
#[test]
fn an_included_file_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("include-permissions");
    let included = scratch.write("open.conf", "User u\n");
    fs::set_permissions(&included, fs::Permissions::from_mode(0o666)).expect("chmod works");
    let text = format!("Include {}\n", included.display());
    let error = SshConfig::parse_str(&text, Path::new(CONFIG), FileKind::User, &scratch.dir)
        .expect_err("ssh refuses such a file");
    assert!(
        matches!(&error, SshConfigError::WritableByOthers { path } if *path == included),
        "{error:?}"
    );
}

#[test]
fn syntax_errors_name_the_line_and_column() {
    let (line, column, message) = syntax_error("Host web\n  Port abc\n");
    assert_eq!((line, column), (2, 8));
    assert!(message.contains("Port must be a number"), "{message}");

    let (line, column, message) = syntax_error("User \"unterminated\n");
    assert_eq!((line, column), (1, 6));
    assert!(message.contains("not closed"), "{message}");
    assert_eq!(
        syntax_error("Host nomatch\n  Port 99999\n").0,
        2,
        "errors count in blocks that do not apply"
    );
    assert_eq!(syntax_error("Port 0\n").1, 6);
    assert_eq!(syntax_error("IdentitiesOnly maybe\n").1, 16);
    assert_eq!(syntax_error("ConnectTimeout 5x\n").1, 16);
    assert_eq!(syntax_error("ServerAliveCountMax -1\n").1, 21);
    assert_eq!(syntax_error("StrictHostKeyChecking perhaps\n").1, 23);
    assert_eq!(
        syntax_error("User a b\n").1,
        8,
        "the extra value is pointed at"
    );
    assert_eq!(syntax_error("\nHost\n").0, 2);
    assert_eq!(syntax_error("User #only a comment\n").1, 6);
    assert_eq!(syntax_error("Match exec\n").1, 7);
    assert_eq!(syntax_error("Match all host x\n").1, 7);
    assert_eq!(syntax_error("ProxyJump a,,b\n").1, 11);
    assert_eq!(syntax_error("ProxyJump host:99999\n").1, 11);

    let error = SshConfig::parse_str(
        "\n\nPort=x\n",
        Path::new(CONFIG),
        FileKind::User,
        Path::new(HOME),
    )
    .expect_err("Port=x is an error");
    assert!(
        error
            .to_string()
            .starts_with("/cfg/config:3:6: Port must be a number"),
        "{error}"
    );
}

#[test]
fn include_errors_name_the_include_line() {
    let scratch = Scratch::new("include-errors");
    let bad = scratch.write("bad.conf", "# fine\nPort none\n");
    let text = format!("Include {}\n", bad.display());
    let error = SshConfig::parse_str(&text, Path::new(CONFIG), FileKind::User, &scratch.dir)
        .expect_err("the included file's error is reported");
    assert!(
        matches!(&error, SshConfigError::Syntax { path, line: 2, column: 6, .. } if *path == bad),
        "{error:?}"
    );
    let system = SshConfig::parse_str(
        "\nInclude ~/x.conf\n",
        Path::new(CONFIG),
        FileKind::System,
        &scratch.dir,
    )
    .expect_err("a system file cannot include from home");
    assert!(
        matches!(
            system,
            SshConfigError::Syntax {
                line: 2,
                column: 9,
                ..
            }
        ),
        "{system:?}"
    );
}

fn tokens() -> Tokens<'static> {
    Tokens {
        host: "web.example",
        alias: "web",
        port: 2222,
        remote_user: "deploy",
        local_user: "me",
        local_uid: 1000,
        home: Path::new(HOME),
        local_host: "laptop.corp.example",
    }
}

#[test]
fn expand_tokens_replaces_every_token_and_the_home_prefix() {
    assert_eq!(
        expand_tokens("~/.ssh/id_%h_%r", &tokens()),
        Ok("/home/tester/.ssh/id_web.example_deploy".to_owned())
    );
    assert_eq!(
        expand_tokens("%d/%u@%l:%p %n 100%%", &tokens()),
        Ok("/home/tester/me@laptop.corp.example:2222 web 100%".to_owned())
    );
    assert_eq!(
        expand_tokens("/run/user/%i/agent.%L", &tokens()),
        Ok("/run/user/1000/agent.laptop".to_owned())
    );
    assert_eq!(expand_tokens("~", &tokens()), Ok(HOME.to_owned()));
    assert_eq!(expand_tokens("a~b", &tokens()), Ok("a~b".to_owned()));
}

#[test]
fn expand_tokens_rejects_unknown_tokens() {
    let error = expand_tokens("/keys/%C", &tokens()).expect_err("%C is not supported");
    assert!(error.contains("%C"), "{error}");
    let error = expand_tokens("/keys/100%", &tokens()).expect_err("a lone % is invalid");
    assert!(error.contains("lone %"), "{error}");
    let error = expand_tokens("~bob/key", &tokens()).expect_err("~user is not looked up");
    assert!(error.contains("~bob"), "{error}");
}

#[test]
fn proxy_jump_none_differs_from_unset() {
    let text = "Host direct\n  ProxyJump none\nHost *\n  ProxyJump jump1,admin@jump2:2222\n";
    assert_eq!(value(&resolve(text, "direct").proxy_jump), Some(Vec::new()));
    assert_eq!(
        value(&resolve(text, "web").proxy_jump),
        Some(strings(&["jump1", "admin@jump2:2222"]))
    );
    assert_eq!(
        value(&resolve("Host *\n  User u\n", "web").proxy_jump),
        None
    );
}

#[test]
fn proxy_jump_and_proxy_command_exclude_each_other_first_wins() {
    let text = "Host command-first\n  ProxyCommand nc %h %p\nHost jump-first\n  ProxyJump j0\nHost none-first\n  ProxyJump none\nHost *\n  ProxyCommand nc -X 5 %h %p\n  ProxyJump j1\n";
    let command_first = resolve(text, "command-first");
    assert_eq!(
        value(&command_first.proxy_command),
        Some("nc %h %p".to_owned())
    );
    assert_eq!(value(&command_first.proxy_jump), None);
    let jump_first = resolve(text, "jump-first");
    assert_eq!(value(&jump_first.proxy_jump), Some(strings(&["j0"])));
    assert_eq!(value(&jump_first.proxy_command), None);
    let none_first = resolve(text, "none-first");
    assert_eq!(value(&none_first.proxy_jump), Some(Vec::new()));
    assert_eq!(
        value(&none_first.proxy_command),
        Some("nc -X 5 %h %p".to_owned())
    );
}

#[test]
fn known_hosts_files_none_is_an_empty_list() {
    let text = "Host a\n  UserKnownHostsFile none\nHost *\n  UserKnownHostsFile ~/.ssh/kh1 \"~/.ssh/kh 2\"\n  GlobalKnownHostsFile NONE\n";
    assert_eq!(
        value(&resolve(text, "a").user_known_hosts_files),
        Some(Vec::new())
    );
    let b = resolve(text, "b");
    assert_eq!(
        value(&b.user_known_hosts_files),
        Some(strings(&["~/.ssh/kh1", "~/.ssh/kh 2"]))
    );
    assert_eq!(value(&b.global_known_hosts_files), Some(Vec::new()));
    assert_eq!(
        value(&resolve("User u\n", "b").user_known_hosts_files),
        None
    );
    assert_eq!(syntax_error("UserKnownHostsFile /a none\n").1, 23);
}

#[test]
fn times_counts_and_host_key_checking_are_parsed_like_ssh() {
    let text = "ConnectTimeout 1m30s\nServerAliveInterval none\nServerAliveInterval 15\nServerAliveCountMax 3\nStrictHostKeyChecking off\nHost strict\n  StrictHostKeyChecking Accept-New\n";
    let resolved = resolve(text, "x");
    assert_eq!(
        value(&resolved.connect_timeout),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        value(&resolved.server_alive_interval),
        Some(Duration::from_secs(15)),
        "none leaves the value unset, so a later line sets it"
    );
    assert_eq!(value(&resolved.server_alive_count_max), Some(3));
    assert_eq!(
        value(&resolved.strict_host_key_checking),
        Some("no".to_owned())
    );
    let strict = resolve("StrictHostKeyChecking Accept-New\n", "x");
    assert_eq!(
        value(&strict.strict_host_key_checking),
        Some("accept-new".to_owned())
    );
    assert_eq!(seconds_of("1w1d1h1m1s"), Some(694_861));
    assert_eq!(seconds_of("3000000000"), None);
}

#[test]
fn host_name_is_expanded_and_lowercased_unless_it_is_an_address() {
    assert_eq!(
        value(&resolve("HostName %h.Example.COM\n", "Web").host_name),
        Some("web.example.com".to_owned())
    );
    assert_eq!(
        value(&resolve("HostName FE80::1%%eth0\n", "x").host_name),
        Some("FE80::1%eth0".to_owned())
    );
    let bad = resolve("\nHostName %x.example\n", "x");
    assert_eq!(value(&bad.host_name), Some("%x.example".to_owned()));
    assert_eq!(bad.warnings.len(), 1);
    assert!(
        bad.warnings[0].starts_with("/cfg/config:2: HostName"),
        "{:?}",
        bad.warnings
    );
    assert!(bad.warnings[0].contains("%x"), "{:?}", bad.warnings);
}

#[test]
fn ignored_security_keywords_are_reported_once_when_they_apply() {
    let text = "Host *\n  ForwardAgent yes\n  forwardagent no\n  Ciphers aes128-ctr\nHost nomatch\n  KexAlgorithms curve25519-sha256\n";
    let warnings = resolve(text, "web").warnings;
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("/cfg/config:2: ForwardAgent is ignored"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].starts_with("/cfg/config:4: Ciphers is ignored"),
        "{}",
        warnings[1]
    );
}

#[test]
fn lexing_keeps_columns_and_unquotes() {
    let line = lex_line("  User = \"a b\"  c\\ d 'e\"f' #rest")
        .expect("valid")
        .expect("not blank");
    assert_eq!(line.keyword, "User");
    assert_eq!(line.raw_column, 10);
    let args: Vec<(&str, usize)> = line
        .args
        .iter()
        .map(|arg| (arg.text.as_str(), arg.column))
        .collect();
    assert_eq!(args, [("a b", 10), ("c d", 17), ("e\"f", 22)]);
    assert!(lex_line("   # only a comment").expect("valid").is_none());
    assert!(lex_line(" \t ").expect("valid").is_none());
}

#[test]
fn pattern_lists_follow_ssh_match_pattern_list() {
    assert!(pattern_list_matches("Web1.Example", "*.example,db*", true));
    assert!(!pattern_list_matches(
        "web1.example",
        "!web1*,*.example",
        true
    ));
    assert!(!pattern_list_matches("Deploy", "deploy", false));
    assert!(pattern_list_matches("deploy", "ops,dep?oy", false));
    assert!(wildcard_match("abc", "a**c"));
    assert!(!wildcard_match("abc", "a?"));
}

/// Issue 17: `Host *a*a*a…` took time exponential in its stars (every
/// split of the text was tried); it must answer at once, and rightly.
#[test]
fn many_stars_match_in_polynomial_time() {
    let text = "a".repeat(60);
    let pattern = format!("{}b", "*a".repeat(25));
    assert!(!wildcard_match(&text, &pattern));
    assert!(wildcard_match(&format!("{text}b"), &pattern));
    let table = [
        ("", "", true),
        ("", "*", true),
        ("", "?", false),
        ("a", "", false),
        ("web-01", "web-??", true),
        ("web-01", "web-?", false),
        ("web-01.prod", "*.prod", true),
        ("web-01.prod", "*.*.prod", false),
        ("ab*c", "ab*c", true),
        ("mississippi", "m*iss*ppi", true),
        ("mississippi", "m*iss*pp", false),
        ("abcabd", "*abd", true),
        ("aaab", "a*a*b", true),
    ];
    for (text, pattern, expected) in table {
        assert_eq!(
            wildcard_match(text, pattern),
            expected,
            "{text:?} ~ {pattern:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The same answers as the real OpenSSH client

/// The local user name, as ssh takes it (from the password database).
fn local_user() -> String {
    let output = Command::new("id")
        .arg("-un")
        .output()
        .expect("`id -un` should run");
    assert!(output.status.success(), "`id -un` failed");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `ssh -G -F config alias`: each printed keyword with its values in order.
fn ssh_g(config: &Path, alias: &str) -> HashMap<String, Vec<String>> {
    let output = Command::new(SSH)
        .arg("-G")
        .arg("-F")
        .arg(config)
        .arg(alias)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {SSH} ({error}): these tests compare with the OpenSSH client; install it (apt-get install openssh-client)")
        });
    assert!(
        output.status.success(),
        "ssh -G -F {} {alias} failed: {}",
        config.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut printed: HashMap<String, Vec<String>> = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let (keyword, value) = line.split_once(' ').unwrap_or((line, ""));
        printed
            .entry(keyword.to_owned())
            .or_default()
            .push(value.to_owned());
    }
    printed
}

/// Writes `files` (`{dir}` replaced by the scratch directory; the first is
/// the config) and checks that resolve agrees with `ssh -G` for each alias
/// on hostname, user, port, proxyjump, proxycommand and identityfile.
fn assert_same_as_ssh(test: &str, files: &[(&str, &str)], aliases: &[&str]) {
    let scratch = Scratch::new(test);
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(name, text)| scratch.write(name, &scratch.fill(text)))
        .collect();
    let config_file = ConfigFile {
        path: paths[0].clone(),
        kind: FileKind::User,
        required: true,
    };
    let config = SshConfig::load(&[config_file], &scratch.dir).expect("config loads");
    let local_user = local_user();
    let context = MatchContext {
        local_user: local_user.clone(),
        user: None,
    };
    for alias in aliases {
        let ssh = ssh_g(&paths[0], alias);
        let ours = config.resolve(alias, &context);
        let printed = |keyword: &str| ssh.get(keyword).map(|values| values.join("\n"));
        let host_name = value(&ours.host_name).unwrap_or(alias.to_ascii_lowercase());
        assert_eq!(printed("hostname"), Some(host_name), "hostname of {alias}");
        let user = value(&ours.user).unwrap_or(local_user.clone());
        assert_eq!(printed("user"), Some(user), "user of {alias}");
        let port = value(&ours.port).unwrap_or(22).to_string();
        assert_eq!(printed("port"), Some(port), "port of {alias}");
        let jump = value(&ours.proxy_jump)
            .filter(|hops| !hops.is_empty())
            .map(|hops| hops.join(","));
        assert_eq!(printed("proxyjump"), jump, "proxyjump of {alias}");
        let command = value(&ours.proxy_command).filter(|command| command != "none");
        assert_eq!(printed("proxycommand"), command, "proxycommand of {alias}");
        if !ours.identity_files.is_empty() {
            assert_eq!(
                ssh.get("identityfile"),
                Some(&values(&ours.identity_files)),
                "identityfile of {alias}"
            );
        }
        assert!(ours.warnings.is_empty(), "{alias}: {:?}", ours.warnings);
    }
}

#[test]
fn same_as_ssh_for_patterns_negation_and_case() {
    let config = "# patterns\n\
        Host *.prod !db*.prod\n  User deploy\n  Port 2201\n\
        Host web?.prod\n  HostName %h.Internal.example\n  User ignored\n  Port 1\n\
        Host Bastion\n  HostName Bastion.Example.COM   \n\
        Host *\n  User fallback\n";
    assert_same_as_ssh(
        "ssh-patterns",
        &[("config", config)],
        &[
            "web1.prod",
            "web12.prod",
            "db1.prod",
            "other",
            "Bastion",
            "bastion",
        ],
    );
}

#[test]
fn same_as_ssh_for_equals_quotes_and_keyword_case() {
    let config = "HOST=\"alpha\" beta\n  hostname = alpha.example\n  USER=\"build user\"\n  port=2022\n  IdentityFile \"/tmp/fleetroll keys/one\"\n  identityfile2=/tmp/keys/two\n\
        Host gamma # a comment\n  Port = 2023 \t\n  User 'single quoted'\n  ProxyCommand  ssh -W \"%h:%p\" bastion\n";
    assert_same_as_ssh(
        "ssh-quotes",
        &[("config", config)],
        &["alpha", "beta", "gamma", "delta"],
    );
}

#[test]
fn same_as_ssh_for_includes() {
    let config = "Include {dir}/conf.d/*.conf\nHost inc-*\n  Include {dir}/inblock.conf\n  Port 4000\nHost *\n  User base\n";
    assert_same_as_ssh(
        "ssh-includes",
        &[
            ("config", config),
            (
                "conf.d/20-b.conf",
                "Host a b\n  Port 2002\n  User buser\n  IdentityFile /keys/b\n",
            ),
            (
                "conf.d/10-a.conf",
                "Host a\n  HostName a.example\n  Port 1001\n",
            ),
            ("conf.d/.hidden.conf", "Host a\n  User hidden\n"),
            ("conf.d/README", "Host *\n  Port 9\n"),
            (
                "inblock.conf",
                "User inblockuser\nHost inc-two\n  Port 4242\n  HostName two.example\n",
            ),
        ],
        &["a", "b", "c", "inc-one", "inc-two"],
    );
}

#[test]
fn same_as_ssh_for_match() {
    let config = format!(
        "Host short\n  HostName long.example.com\n\
        Match host *.example.com\n  User matched\n\
        Match originalhost short\n  Port 2200\n\
        Match host !*.example.com,other*\n  Port 1111\n\
        Match localuser {}\n  IdentityFile /keys/local\n\
        Match user matched\n  IdentityFile /keys/matched-user\n\
        Match !user matched originalhost unrelated\n  ProxyJump j9\n\
        Match all\n  IdentityFile /keys/all\n",
        local_user()
    );
    assert_same_as_ssh(
        "ssh-match",
        &[("config", &config)],
        &["short", "other1", "long.example.com", "unrelated"],
    );
}

#[test]
fn same_as_ssh_for_several_identity_files() {
    let config = "IdentityFile /keys/global\nHost multi\n  IdentityFile /keys/one\n  IdentityFile /keys/two\nHost multi*\n  IdentityFile /keys/one\n  IdentityFile /keys/three\n  IdentityFile /keys/global\n";
    assert_same_as_ssh(
        "ssh-identities",
        &[("config", config)],
        &["multi", "multi2", "x"],
    );
}

#[test]
fn same_as_ssh_for_proxy_jumps() {
    let config = "Host direct\n  ProxyJump none\n\
        Host a\n  ProxyJump jumpuser@j1:2222,j2\n\
        Host pc\n  ProxyCommand nc %h %p\n\
        Host none-then-command\n  ProxyJump none\n  ProxyCommand nc -X 5 %h %p\n\
        Host *\n  ProxyJump=j3,admin@j4:2200\n";
    assert_same_as_ssh(
        "ssh-jumps",
        &[("config", config)],
        &["direct", "a", "pc", "none-then-command", "b"],
    );
}
