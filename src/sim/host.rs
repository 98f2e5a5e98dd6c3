//! One simulated VM: its app's version and state, and the tiny shell its SSH
//! server runs commands with.
//!
//! A release may be bad: `deploy --fail 30% 2.0` installs a 2.0 whose app
//! passes its health check but answers 30% of its ordinary requests with
//! HTTP 500 (`fleetroll demo --bad-release`).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// What the host's app is doing. `WarmingUntil` is how a restarted service
/// looks from outside: the port answers, but 503 until it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    Serving,
    Stopped,
    WarmingUntil(Instant),
}

/// How the app answers right now, with warm-up that has passed counted as
/// serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppHealth {
    Serving(String),
    Warming,
    Stopped,
}

/// A simulated VM. Cheap to clone: clones share the same state, which the
/// app server, the SSH server and the fleet all look at.
#[derive(Debug, Clone)]
pub struct SimHost {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    zone: String,
    /// How long `deploy` keeps the app stopped.
    step_time: Duration,
    /// How long the app answers 503 after `deploy` restarts it.
    warmup: Duration,
    state: Mutex<State>,
    /// The host's step lock (`step_lock`): held while a guarded step runs.
    step_lock: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct State {
    version: String,
    app: AppState,
    /// The share, in percent, of ordinary requests the installed release
    /// fails: 0 but for a release deployed with `--fail`.
    fail_percent: u64,
    /// Ordinary requests the installed release was asked.
    requests: u64,
}

/// Exit status, stdout and stderr of a command.
pub type ExecResult = (u32, String, String);

impl SimHost {
    pub fn new(
        name: &str,
        zone: &str,
        version: &str,
        step_time: Duration,
        warmup: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                zone: zone.to_owned(),
                step_time,
                warmup,
                state: Mutex::new(State {
                    version: version.to_owned(),
                    app: AppState::Serving,
                    fail_percent: 0,
                    requests: 0,
                }),
                step_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn zone(&self) -> &str {
        &self.inner.zone
    }

    pub fn version(&self) -> String {
        self.state().version.clone()
    }

    pub fn app_state(&self) -> AppState {
        self.state().app
    }

    /// How the app answers now; a warm-up that is over becomes `Serving`.
    pub fn health(&self) -> AppHealth {
        let mut state = self.state();
        if let AppState::WarmingUntil(until) = state.app {
            if Instant::now() < until {
                return AppHealth::Warming;
            }
            state.app = AppState::Serving;
        }
        match state.app {
            AppState::Stopped => AppHealth::Stopped,
            _ => AppHealth::Serving(state.version.clone()),
        }
    }

    /// The share, in percent, of ordinary requests the installed release
    /// fails.
    pub fn fail_percent(&self) -> u64 {
        self.state().fail_percent
    }

    /// Counts one ordinary request (not a health check) to the installed
    /// release, and says whether the release fails it. The failures are
    /// spread evenly, not drawn at random: at 30%, the 4th, 7th and 10th
    /// of every 10.
    pub fn next_request_fails(&self) -> bool {
        let mut state = self.state();
        let (n, share) = (state.requests, state.fail_percent);
        state.requests += 1;
        (n + 1) * share / 100 > n * share / 100
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state
        // is still a valid pair of fields.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a command line of the simulated shell: simple commands joined
    /// with `&&`, each split into words like a POSIX shell would (quotes
    /// included, since fleetroll shell-quotes substituted values).
    pub async fn exec(&self, command: &str) -> ExecResult {
        use crate::transport::step_guard::{self, BUSY_EXIT, Query};
        if let Some(query) = step_guard::parse_query(command) {
            let busy = self.inner.step_lock.try_lock().is_err();
            return match query {
                Query::Busy { .. } => (u32::from(busy), String::new(), String::new()),
                // Simulated steps are not cut short from outside.
                Query::Stop { .. } => (0, String::new(), String::new()),
            };
        }
        if let Some(guarded) = step_guard::parse(command) {
            // As `flock -w` and `timeout` would: wait for the lock, bounded,
            // and stop the step when its limit is up.
            let Ok(_held) = tokio::time::timeout(guarded.wait, self.inner.step_lock.lock()).await
            else {
                return (BUSY_EXIT, String::new(), "sim: step lock busy\n".to_owned());
            };
            return match tokio::time::timeout(guarded.limit, self.run_line(&guarded.step)).await {
                Ok(result) => result,
                Err(_) => (124, String::new(), String::new()),
            };
        }
        self.run_line(command).await
    }

    async fn run_line(&self, command: &str) -> ExecResult {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut status = 0;
        for part in command.split("&&") {
            let Some(words) = shlex::split(part) else {
                stderr.push_str("sim: unbalanced quotes\n");
                return (2, stdout, stderr);
            };
            if words.is_empty() {
                stderr.push_str("sim: syntax error near `&&'\n");
                return (2, stdout, stderr);
            }
            let (code, out, err) = self.simple(&words).await;
            stdout.push_str(&out);
            stderr.push_str(&err);
            status = code;
            if code != 0 {
                break;
            }
        }
        (status, stdout, stderr)
    }

    async fn simple(&self, words: &[String]) -> ExecResult {
        let ok = |out: String| (0, out, String::new());
        let usage = |text: &str| (2, String::new(), format!("sim: usage: {text}\n"));
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        match (words[0].as_str(), args.as_slice()) {
            ("true", []) => ok(String::new()),
            ("false", []) => (1, String::new(), String::new()),
            ("version", []) => ok(format!("{}\n", self.version())),
            ("exit", [code]) => match code.parse() {
                Ok(code) => (code, String::new(), String::new()),
                Err(_) => usage("exit N"),
            },
            ("sleep", [secs]) => match secs
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
            {
                Some(duration) => {
                    tokio::time::sleep(duration).await;
                    ok(String::new())
                }
                None => usage("sleep SECS"),
            },
            ("deploy", [version]) if !version.starts_with('-') => {
                self.deploy(version, 0).await;
                ok(format!("{}: deployed {version}\n", self.name()))
            }
            ("deploy", ["--fail", share, version]) => {
                let Some(percent) = share
                    .strip_suffix('%')
                    .unwrap_or(share)
                    .parse()
                    .ok()
                    .filter(|p| *p <= 100)
                else {
                    return usage("deploy [--fail PERCENT%] VERSION");
                };
                self.deploy(version, percent).await;
                ok(format!(
                    "{}: deployed {version}, a release that fails {percent}% of its requests\n",
                    self.name()
                ))
            }
            ("deploy", _) => usage("deploy [--fail PERCENT%] VERSION"),
            (name, _) => (
                127,
                String::new(),
                format!("sim: unknown command: {name}\n"),
            ),
        }
    }

    /// Like a package upgrade and a service restart: the app is down for
    /// `step_time`, then warms up with the new version, which fails
    /// `fail_percent`% of its ordinary requests.
    async fn deploy(&self, version: &str, fail_percent: u64) {
        self.state().app = AppState::Stopped;
        tokio::time::sleep(self.inner.step_time).await;
        let mut state = self.state();
        state.version = version.to_owned();
        state.fail_percent = fail_percent;
        state.requests = 0;
        state.app = AppState::WarmingUntil(Instant::now() + self.inner.warmup);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time, short durations: paused time needs tokio's `test-util`
    // feature, which this crate does not enable.
    fn host() -> SimHost {
        SimHost::new(
            "web-01",
            "z",
            "1.0",
            Duration::from_millis(200),
            Duration::from_millis(300),
        )
    }

    #[tokio::test]
    async fn simple_commands() {
        let host = host();
        assert_eq!(
            host.exec("version").await,
            (0, "1.0\n".into(), String::new())
        );
        assert_eq!(host.exec("true").await.0, 0);
        assert_eq!(host.exec("false").await.0, 1);
        assert_eq!(host.exec("exit 7").await.0, 7);
        let (code, _, err) = host.exec("rm -rf /").await;
        assert_eq!(code, 127);
        assert!(err.contains("sim: unknown command"), "{err}");
        let started = Instant::now();
        assert_eq!(host.exec("sleep 0.05").await.0, 0);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(host.exec("sleep soon").await.0, 2);
    }

    #[tokio::test]
    async fn chains_stop_at_the_first_failure() {
        let host = host();
        let (code, out, _) = host.exec("version && false && version").await;
        assert_eq!((code, out.as_str()), (1, "1.0\n"));
        let (code, out, _) = host.exec("true && version").await;
        assert_eq!((code, out.as_str()), (0, "1.0\n"));
        assert_eq!(host.exec("true && nope").await.0, 127);
        assert_eq!(host.exec("true && ").await.0, 2);
    }

    #[tokio::test]
    async fn deploy_stops_then_warms_up() {
        let host = host();
        let deploy = tokio::spawn({
            let host = host.clone();
            async move { host.exec("deploy '2.0'").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(host.health(), AppHealth::Stopped);
        assert_eq!(host.version(), "1.0");
        let (code, out, _) = deploy.await.unwrap();
        assert_eq!(code, 0, "{out}");
        assert_eq!(host.version(), "2.0");
        assert_eq!(host.health(), AppHealth::Warming);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(host.health(), AppHealth::Serving("2.0".into()));
        assert_eq!(host.app_state(), AppState::Serving);
    }

    #[tokio::test]
    async fn a_bad_release_fails_its_share_of_requests_evenly() {
        let host = host();
        assert!(!(0..100).any(|_| host.next_request_fails()), "1.0 is good");
        let (code, out, _) = host.exec("deploy --fail 30% '2.0'").await;
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "web-01: deployed 2.0, a release that fails 30% of its requests\n"
        );
        assert_eq!((host.version(), host.fail_percent()), ("2.0".into(), 30));
        let fails: Vec<bool> = (0..10).map(|_| host.next_request_fails()).collect();
        let failed: Vec<usize> = (1..=10).filter(|n| fails[n - 1]).collect();
        assert_eq!(failed, [4, 7, 10]);
        assert_eq!((0..990).filter(|_| host.next_request_fails()).count(), 297);
        // The next release is good again.
        assert_eq!(host.exec("deploy 2.1").await.0, 0);
        assert_eq!(host.fail_percent(), 0);
        assert!(!(0..100).any(|_| host.next_request_fails()));
        for bad in [
            "deploy --fail 101% 3.0",
            "deploy --fail many 3.0",
            "deploy --fail 30%",
            "deploy --fail",
        ] {
            assert_eq!(host.exec(bad).await.0, 2, "{bad}");
        }
        assert_eq!(host.version(), "2.1");
    }
}
