//! The scanner's verdicts, and real `sh -c` runs that show they are right:
//! accepted places keep a hostile value one literal word, refused places
//! really would run it.

use std::path::Path;
use std::process::Command;

use super::*;
use crate::model::template::{Quoting, TemplateContext, Vars};

fn verdict(text: &str) -> Option<ShellTrap> {
    let template = Template::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    misquoted_placeholder(&template).map(|m| {
        assert_eq!(
            &text[m.offset..m.offset + m.placeholder.len()],
            m.placeholder,
            "the offset points at the placeholder in {text:?}"
        );
        m.trap
    })
}

/// Values that run `touch PWNED` if the shell evaluates them as code.
const HOSTILE: &[&str] = &[
    "$(touch PWNED)",
    "`touch PWNED`",
    "it's $(touch PWNED)",
    "\\$(touch PWNED)",
    "a\\$(touch PWNED)\\",
    "a\"b'c\\d $(touch PWNED)",
    "x) ; touch PWNED; (",
    "x\ntouch PWNED",
    "' ; touch PWNED ; '",
    "\" ; touch PWNED ; \"",
    "a[$(touch PWNED)]",
    "*",
    "",
];

/// Renders `text` with `{vars.x}` = `value` and runs it with `shell -c` in
/// a fresh directory; returns stdout and whether `PWNED` was created.
fn run(shell: &str, text: &str, value: &str) -> (String, bool) {
    let vars: Vars = [("x".to_owned(), value.to_owned())].into();
    let context = TemplateContext {
        host: "web-01",
        address: "10.0.0.1",
        zone: "a",
        vars: &vars,
    };
    let command = Template::parse(text)
        .unwrap()
        .render(&context, Quoting::Shell)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(shell)
        .arg("-c")
        .arg(&command)
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("run {shell}: {e}"));
    let pwned = Path::new(&dir.path().join("PWNED")).exists();
    (String::from_utf8_lossy(&output.stdout).into_owned(), pwned)
}

#[test]
fn placeholders_in_plain_words_are_accepted() {
    for text in [
        "printf %s {vars.x}",
        "printf %s pre{vars.x}post",
        "printf %s \"quoted: \"{vars.x}",
        "v={vars.x}; printf %s \"$v\"",
        "printf %s \"$(printf %s {vars.x})\"",
        "printf %s \"$(printf %s \"$(printf %s {vars.x})\")\"",
        "test \"$(printf %s {vars.x})\" = {vars.x} && printf %s {vars.x}",
        "printf %s $(printf %s {vars.x} | wc -c) >/dev/null; printf %s {vars.x}",
        "printf %s \"$( (printf %s {vars.x}) )\"",
        "awk '{{print $1}}' /dev/null; printf %s {vars.x}",
        "# it's a comment\nprintf %s {vars.x}",
        "printf %s {vars.x} # don't",
        "cat <<EOF >/dev/null\nit's \"$HOME\"\nEOF\nprintf %s {vars.x}",
        "cat <<-'EOF' >/dev/null\n\tit's\n\tEOF\nprintf %s {vars.x}",
        "case a in a) printf %s {vars.x};; esac",
        "printf %s \\\\{vars.x}",
        "printf %s \"\\\"\"{vars.x}",
        "printf %s \"$HOME\" >/dev/null; printf %s {vars.x}",
        "n=$((1 << 2))\nprintf %s {vars.x}",
    ] {
        assert_eq!(verdict(text), None, "{text:?}");
        for value in HOSTILE {
            let (stdout, pwned) = run("sh", text, value);
            assert!(!pwned, "{text:?} with {value:?} ran the value");
            let expected = if text.starts_with("printf %s pre") {
                format!("pre{value}post")
            } else if text.starts_with("printf %s \"quoted") {
                format!("quoted: {value}")
            } else if text.starts_with("printf %s \\\\") {
                format!("\\{value}")
            } else if text.starts_with("printf %s \"\\\"\"") {
                format!("\"{value}")
            } else if text.contains("$(printf %s {vars.x})") || text.contains("$( (") {
                // Command substitution drops trailing newlines.
                value.trim_end_matches('\n').to_owned()
            } else {
                (*value).to_owned()
            };
            assert_eq!(stdout, expected, "{text:?} with {value:?}");
        }
    }
}

#[test]
fn placeholders_where_quoting_breaks_are_refused() {
    use ShellTrap::*;
    let cases = [
        ("echo \"{vars.x}\"", DoubleQuotes),
        ("echo \"a $(b) {vars.x}\"", DoubleQuotes),
        ("echo \"\\\"{vars.x}\\\"\"", DoubleQuotes),
        ("echo \"$(echo \"{vars.x}\")\"", DoubleQuotes),
        ("echo \"${{X:-{vars.x}}}\"", DoubleQuotes),
        ("echo $\"{vars.x}\"", DoubleQuotes),
        ("echo '{vars.x}'", SingleQuotes),
        ("echo \"it's\" '{vars.x}'", SingleQuotes),
        ("echo $'{vars.x}'", SingleQuotes),
        ("echo `echo {vars.x}`", Backquotes),
        ("echo \"`echo {vars.x}`\"", Backquotes),
        ("echo $(( {vars.x} + 1 ))", Arithmetic),
        ("echo $(( ({vars.x}) ))", Arithmetic),
        ("(( {vars.x} > 1 ))", Arithmetic),
        ("cat <<EOF\n{vars.x}\nEOF", HereDocument),
        ("cat <<-'EOF'\n\tx\n\t{vars.x}\n\tEOF", HereDocument),
        ("cat <<A <<B\na\nA\n{vars.x}\nB", HereDocument),
        ("cat <<EOF\nx\nEOF\necho \"{vars.x}\"", DoubleQuotes),
        ("echo \\{vars.x}", AfterBackslash),
        ("echo ${vars.x}", AfterDollar),
        // Known to err towards refusing: a `case` pattern's `)` inside
        // `$(…)` reads as its end, so the placeholder seems in the quotes.
        (
            "echo \"$(case a in a) echo {vars.x};; esac)\"",
            DoubleQuotes,
        ),
    ];
    for (text, trap) in cases {
        assert_eq!(verdict(text), Some(trap), "{text:?}");
    }
    // tests/cli/rollout.rs's skip_if and command probe: `$(…)` inside
    // double quotes is a new command, where quoting holds.
    assert_eq!(
        verdict("test \"$({vars.appctl} {vars.dir} version)\" = {vars.version}"),
        None
    );
    // bash's here-string is a word on the command line, not a body.
    assert_eq!(verdict("cat <<< {vars.x}"), None);
    // No placeholder: nothing to scan, whatever the quoting.
    assert_eq!(verdict("echo \"unterminated `"), None);
}

/// Why each refusal is needed: with the placeholder where the user wrote
/// it, a real shell runs a command from the value.
#[test]
fn refused_places_really_run_a_hostile_value() {
    let runs_some_value = |shell: &str, text: &str| {
        assert!(verdict(text).is_some(), "{text:?}");
        HOSTILE.iter().any(|value| run(shell, text, value).1)
    };
    for text in [
        "echo \"{vars.x}\"",
        "echo '{vars.x}'",
        "echo `echo {vars.x}`",
        "cat <<EOF\n{vars.x}\nEOF",
        "echo \"$(echo \"{vars.x}\")\"",
    ] {
        assert!(runs_some_value("sh", text), "{text:?} looked safe");
    }
    // Arithmetic reads its operands as if inside double quotes.
    assert!(runs_some_value("sh", "echo $(( {vars.x} ))"));
    if Path::new("/bin/bash").exists() {
        assert!(runs_some_value("/bin/bash", "(( {vars.x} > 1 ))"));
    }
}
