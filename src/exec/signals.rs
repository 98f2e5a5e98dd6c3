//! SIGINT and SIGTERM as a stream of stop requests.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// Spawns a listener that sends one message per SIGINT or SIGTERM.
pub fn listen() -> mpsc::UnboundedReceiver<&'static str> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            if tx.send(name).is_err() {
                return;
            }
        }
    });
    rx
}
