//! Signals as a stream of requests to the run: SIGINT, SIGTERM and SIGHUP
//! ask it to stop (a closed terminal or a cron job's end is not a reason
//! to abandon hosts half-way); SIGTSTP (Ctrl-Z) is refused, since a
//! suspended holder's heartbeat stops and another fleetroll could take
//! the lock over while this one still has hosts out.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// The one signal that does not ask the run to stop.
pub const SUSPEND: &str = "SIGTSTP";

/// Spawns a listener that sends one message per signal received.
pub fn listen() -> mpsc::UnboundedReceiver<&'static str> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut tstp)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
            signal(SignalKind::from_raw(rustix::process::Signal::TSTP.as_raw())),
        ) else {
            return;
        };
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
                _ = tstp.recv() => SUSPEND,
            };
            if tx.send(name).is_err() {
                return;
            }
        }
    });
    rx
}
