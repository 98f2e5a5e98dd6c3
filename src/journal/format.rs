//! One journal line: an [`Envelope`] stamped with the format version.
//!
//! Every line carries `"v"`, so a reader can tell a journal written by a
//! newer fleetroll (whose records it might misread, or whose new records it
//! would skip) and refuse it instead of resuming from half a story. Lines
//! without `"v"` were written before versions existed: they are version 1.
//! The version changes only when old readers would misread new records;
//! adding an optional field does not change it.

use serde::{Deserialize, Serialize};

use crate::events::Envelope;

/// The version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct Versioned<'a> {
    v: u32,
    #[serde(flatten)]
    envelope: &'a Envelope,
}

/// Just the version of a line, read before the rest.
#[derive(Deserialize)]
struct Version {
    #[serde(default = "first_version")]
    v: u32,
}

fn first_version() -> u32 {
    1
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("written in format version {version}")]
    Newer { version: u32 },
    #[error("{0}")]
    Malformed(String),
}

/// `envelope` as one journal line, newline included.
#[cfg(test)]
pub fn encode(envelope: &Envelope) -> serde_json::Result<Vec<u8>> {
    let mut line = Vec::new();
    encode_into(&mut line, envelope)?;
    Ok(line)
}

/// Appends one line to `out`; on an error `out` is left as it was.
pub fn encode_into(out: &mut Vec<u8>, envelope: &Envelope) -> serde_json::Result<()> {
    let start = out.len();
    serde_json::to_writer(
        &mut *out,
        &Versioned {
            v: FORMAT_VERSION,
            envelope,
        },
    )
    .inspect_err(|_| out.truncate(start))?;
    out.push(b'\n');
    Ok(())
}

/// One line, without its newline.
pub fn decode(line: &[u8]) -> Result<Envelope, DecodeError> {
    let malformed = |error: serde_json::Error| DecodeError::Malformed(error.to_string());
    let Version { v } = serde_json::from_slice(line).map_err(malformed)?;
    if v > FORMAT_VERSION {
        return Err(DecodeError::Newer { version: v });
    }
    serde_json::from_slice(line).map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    #[test]
    fn a_line_round_trips_with_its_version_first() {
        let envelope = Envelope {
            ts: "2026-01-01T00:00:00Z".into(),
            run_id: "r1".into(),
            event: Event::Drain {
                host: "h1".into(),
                balancer: "web".into(),
            },
        };
        let line = encode(&envelope).unwrap();
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            "{\"v\":1,\"ts\":\"2026-01-01T00:00:00Z\",\"run_id\":\"r1\",\"event\":\"drain\",\"host\":\"h1\",\"balancer\":\"web\"}\n"
        );
        assert_eq!(decode(&line[..line.len() - 1]).unwrap(), envelope);
    }

    #[test]
    fn versions_are_checked_before_the_record() {
        // A newer record may be one this build does not know at all.
        let newer = br#"{"v":2,"ts":"t","run_id":"r","event":"teleported"}"#;
        assert!(matches!(
            decode(newer),
            Err(DecodeError::Newer { version: 2 })
        ));
        let unknown = br#"{"v":1,"ts":"t","run_id":"r","event":"teleported"}"#;
        assert!(matches!(decode(unknown), Err(DecodeError::Malformed(_))));
        assert!(matches!(
            decode(b"{\"v\":\"one\"}"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(decode(b""), Err(DecodeError::Malformed(_))));
    }
}
