//! Host counts written as a number or a percentage: `3`, `"10%"`, `"12.5%"`.

use std::fmt;

/// A number of hosts, absolute or relative to some total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Amount {
    Count(u64),
    /// Hundredths of a percent, so that `"12.5%"` is exact: 1250.
    Percent(u32),
}

/// Why a string is not an amount; the caller adds where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("expected a host count such as 3 or a percentage such as \"10%\"")]
    Malformed,
    #[error("a percentage must be between 0% and 100%")]
    OutOfRange,
    #[error("a host count cannot be negative")]
    Negative,
}

impl Amount {
    /// 100% in the hundredths that [`Amount::Percent`] counts.
    pub const HUNDRED_PERCENT: u32 = 10_000;

    pub fn from_int(value: i64) -> Result<Self, AmountError> {
        u64::try_from(value)
            .map(Amount::Count)
            .map_err(|_| AmountError::Negative)
    }

    /// Parses `"25%"`, `"12.5%"` or a bare integer written as a string.
    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let text = text.trim();
        let Some(number) = text.strip_suffix('%') else {
            return text
                .parse::<i64>()
                .map_err(|_| AmountError::Malformed)
                .and_then(Self::from_int);
        };
        let number = number.trim_end();
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || fraction.len() > 2
            || (number.contains('.') && fraction.is_empty())
        {
            return Err(AmountError::Malformed);
        }
        let whole: u32 = whole.parse().map_err(|_| AmountError::OutOfRange)?;
        let fraction: u32 = format!("{fraction:0<2}").parse().unwrap_or(0);
        let hundredths = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(fraction))
            .ok_or(AmountError::OutOfRange)?;
        if hundredths > Self::HUNDRED_PERCENT {
            return Err(AmountError::OutOfRange);
        }
        Ok(Amount::Percent(hundredths))
    }

    pub fn is_zero(self) -> bool {
        matches!(self, Amount::Count(0) | Amount::Percent(0))
    }

    /// The number of hosts this amount allows out of `total`, rounded down.
    pub fn floor_of(self, total: usize) -> usize {
        match self {
            Amount::Count(count) => usize::try_from(count).unwrap_or(usize::MAX),
            Amount::Percent(hundredths) => {
                let scaled =
                    total as u128 * u128::from(hundredths) / u128::from(Self::HUNDRED_PERCENT);
                usize::try_from(scaled).unwrap_or(usize::MAX)
            }
        }
    }

    /// Like [`Amount::floor_of`] but never below one host, unless the amount
    /// is literally zero: "10%" of 5 hosts is 1 host, not 0.
    pub fn at_least_one_of(self, total: usize) -> usize {
        if self.is_zero() {
            0
        } else {
            self.floor_of(total).max(1)
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Amount::Count(count) => write!(f, "{count}"),
            Amount::Percent(hundredths) if hundredths % 100 == 0 => {
                write!(f, "{}%", hundredths / 100)
            }
            Amount::Percent(hundredths) => {
                let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
                write!(f, "{}%", text.trim_end_matches('0'))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_percentages() {
        let cases = [
            ("10%", Ok(Amount::Percent(1000))),
            ("12.5%", Ok(Amount::Percent(1250))),
            ("0.25%", Ok(Amount::Percent(25))),
            ("100%", Ok(Amount::Percent(10000))),
            ("7", Ok(Amount::Count(7))),
            ("101%", Err(AmountError::OutOfRange)),
            ("-3", Err(AmountError::Negative)),
            ("ten%", Err(AmountError::Malformed)),
            ("10 percent", Err(AmountError::Malformed)),
            ("1.%", Err(AmountError::Malformed)),
            ("1.234%", Err(AmountError::Malformed)),
            ("%", Err(AmountError::Malformed)),
        ];
        for (text, expected) in cases {
            assert_eq!(Amount::parse(text), expected, "{text}");
        }
    }

    #[test]
    fn rounds_down_but_batches_never_below_one() {
        assert_eq!(Amount::Percent(1000).floor_of(40), 4);
        assert_eq!(Amount::Percent(2500).floor_of(10), 2);
        assert_eq!(Amount::Percent(500).floor_of(10), 0);
        assert_eq!(Amount::Percent(500).at_least_one_of(10), 1);
        assert_eq!(Amount::Percent(0).at_least_one_of(10), 0);
        assert_eq!(Amount::Count(3).floor_of(2), 3);
    }

    #[test]
    fn displays_as_written() {
        assert_eq!(Amount::Percent(1250).to_string(), "12.5%");
        assert_eq!(Amount::Percent(1000).to_string(), "10%");
        assert_eq!(Amount::Count(2).to_string(), "2");
    }
}
