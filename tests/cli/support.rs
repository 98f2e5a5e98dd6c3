//! A small builder that runs the real `fleetroll` binary in a scratch directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a finished command printed and returned.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A scratch directory with files in it, and the command to run there.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create a scratch directory"),
        }
    }

    pub fn file(self, name: &str, text: &str) -> Self {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent directory");
        }
        std::fs::write(path, text).expect("write a scratch file");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `fleetroll ARGS` with the scratch directory as working directory,
    /// so that file names in the output are short and stable.
    pub fn run(&self, args: &[&str]) -> Output {
        run_in(self.dir.path(), args)
    }
}

pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_fleetroll"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("FLEETROLL_FAKE_NOW", "2026-11-27T12:00:00Z")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the fleetroll binary");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The repository's root, where the example files live.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
