//! `--json`: one event object per line on stdout.

use std::io::Write;

use crate::events::Envelope;
use crate::exec::dispatcher::EventSink;
use crate::journal::replay::RunRecord;

#[derive(Debug, Default)]
pub struct JsonSink;

impl EventSink for JsonSink {
    fn event(&mut self, envelope: &Envelope, _record: &RunRecord) {
        if let Ok(line) = serde_json::to_string(envelope) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}
