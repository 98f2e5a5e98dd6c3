//! What a package installs besides the binary: shell completions and the
//! man page, generated from the command line's own definition.

use crate::support::{repo_root, run_in};

const COMMANDS: [&str; 8] = [
    "validate", "plan", "run", "resume", "status", "rollback", "unlock", "demo",
];

#[test]
fn completions_for_bash_zsh_and_fish_know_every_command() {
    for (shell, marker) in [
        ("bash", "complete -F _fleetroll"),
        ("zsh", "#compdef fleetroll"),
        ("fish", "complete -c fleetroll"),
    ] {
        let output = run_in(&repo_root(), &["completions", shell]);
        assert_eq!(output.code, 0, "{shell}: {}", output.stderr);
        assert!(
            output.stdout.contains(marker),
            "{shell}:\n{}",
            output.stdout
        );
        for command in COMMANDS {
            assert!(output.stdout.contains(command), "{shell} lacks {command}");
        }
        assert!(
            output.stdout.contains("log-file"),
            "{shell} lacks --log-file"
        );
    }
    let unknown = run_in(&repo_root(), &["completions", "tcsh"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
}

#[test]
fn the_man_page_is_roff_with_every_command_and_the_exit_codes() {
    let output = run_in(&repo_root(), &["man"]);
    assert_eq!(output.code, 0, "{}", output.stderr);
    assert!(
        output.stdout.contains(".TH fleetroll 1"),
        "{}",
        output.stdout
    );
    for command in COMMANDS {
        assert!(
            output.stdout.contains(command),
            "the man page lacks {command}"
        );
    }
    assert!(
        output.stdout.contains("4 locked by another run"),
        "{}",
        output.stdout
    );
}
