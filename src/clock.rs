//! The wall clock, read in one place so that it can be shifted.
//!
//! Maintenance windows are minutes wide; testing "the window closes in the
//! middle of a run" against the real clock would mean waiting for one. Like
//! `faketime`, `FLEETROLL_FAKE_NOW` (an RFC 3339 instant, or a zoned time
//! such as `2026-11-28T04:59:50+01:00[Europe/Berlin]`) makes the clock start
//! at that instant and run on in real time. It is read once, at the edge.

use jiff::{SignedDuration, Timestamp, Zoned};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset: SignedDuration,
    /// For simulations under paused tokio time: `now` is this instant plus
    /// the tokio time elapsed since the anchor.
    anchor: Option<(Timestamp, tokio::time::Instant)>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads `start` now and advances in real time.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            offset: start.duration_since(Timestamp::now()),
            anchor: None,
        }
    }

    /// A clock that reads `start` now and advances with tokio's clock, so
    /// that it follows paused time in simulations.
    pub fn following_tokio(start: Timestamp) -> Self {
        Self {
            offset: SignedDuration::ZERO,
            anchor: Some((start, tokio::time::Instant::now())),
        }
    }

    /// The system clock, or the one `FLEETROLL_FAKE_NOW` asks for.
    pub fn from_env() -> Result<Self, String> {
        let Ok(text) = std::env::var("FLEETROLL_FAKE_NOW") else {
            return Ok(Self::system());
        };
        let start = text
            .parse::<Timestamp>()
            .or_else(|_| text.parse::<Zoned>().map(|z| z.timestamp()))
            .map_err(|error| format!("FLEETROLL_FAKE_NOW={text}: {error}"))?;
        Ok(Self::starting_at(start))
    }

    pub fn now(&self) -> Timestamp {
        if let Some((start, at)) = self.anchor {
            let elapsed = SignedDuration::try_from(at.elapsed()).unwrap_or(SignedDuration::MAX);
            return start.checked_add(elapsed).unwrap_or(start);
        }
        Timestamp::now()
            .checked_add(self.offset)
            .unwrap_or_else(|_| Timestamp::now())
    }
}
