//! The live view, seen in a real terminal: `fleetroll demo` in tmux, its
//! screen captured while the run goes on.

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of this test's own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: format!("fleetroll-test-{}", std::process::id()),
        };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "new-session", "-d", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(command)
            .status()
            .expect("tmux is installed by tests/setup.sh");
        assert!(status.success());
        tmux
    }

    fn screen(&self) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls the screen until `ready` says yes, for at most `limit`.
    fn wait_for(&self, limit: Duration, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "not seen in {limit:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn the_demo_in_a_terminal_shows_a_status_area_and_one_line_per_finished_host() {
    let binary = env!("CARGO_BIN_EXE_fleetroll");
    let tmux = Tmux::start(&format!("{binary} demo; sleep 600"), 110, 40);
    // Mid-run: the status area, with a batch, zone counts and a host in flight.
    let screen = tmux.wait_for(Duration::from_secs(60), |screen| {
        screen.contains("in flight") && screen.contains("✓ web-01")
    });
    eprintln!("--- mid-run:\n{screen}");
    let status = screen
        .lines()
        .find(|line| line.contains("in flight"))
        .unwrap();
    assert!(status.starts_with("batch "), "{status}");
    assert!(status.contains("/12 done"), "{status}");
    assert!(
        screen.contains("  zones: eu-west-1a "),
        "zone counts:\n{screen}"
    );
    // One line per finished host, not one per phase.
    assert!(!screen.contains("web-01 draining"), "{screen}");
    assert!(
        screen.contains("✓ web-01         eu-west-1a   updated"),
        "{screen}"
    );
    // The end: the status area is gone, the summary is there.
    let screen = tmux.wait_for(Duration::from_secs(90), |screen| {
        screen.contains("traffic during the rollout")
    });
    eprintln!("--- at the end:\n{screen}");
    assert!(!screen.contains("in flight"), "{screen}");
    for host in 1..=12 {
        assert!(
            screen.contains(&format!("web-{host:02}")),
            "web-{host:02} in:\n{screen}"
        );
    }
    assert!(screen.contains("0 failed"), "{screen}");
}
