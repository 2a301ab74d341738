//! Redis stream entry ids (`<milliseconds>-<sequence>`), which are separate from the updates'
//! own ids: they order the stream, and the reader compares them to find what it missed.

use std::{fmt, str::FromStr};

/// A stream entry id, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    /// `0-0`: before every entry.
    pub const ZERO: Self = Self { ms: 0, seq: 0 };

    /// The greatest id below this one (`0-0` has none and is its own).
    #[must_use]
    pub fn predecessor(self) -> Self {
        match (self.ms, self.seq) {
            (0, 0) => self,
            (ms, 0) => Self {
                ms: ms - 1,
                seq: u64::MAX,
            },
            (ms, seq) => Self { ms, seq: seq - 1 },
        }
    }
}

/// Why a string is not a stream entry id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stream entry id: {0:?}")]
pub struct NotAnEntryId(String);

impl FromStr for EntryId {
    type Err = NotAnEntryId;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let wrong = || NotAnEntryId(value.to_owned());
        let (ms, seq) = value.split_once('-').ok_or_else(wrong)?;
        Ok(Self {
            ms: ms.parse().map_err(|_| wrong())?,
            seq: seq.parse().map_err(|_| wrong())?,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> EntryId {
        value.parse().unwrap()
    }

    #[test]
    fn entry_ids_order_by_time_then_sequence_not_as_text() {
        assert!(id("9-0") < id("10-0"));
        assert!(id("10-2") < id("10-10"));
        assert_eq!(id("1700000000000-3").to_string(), "1700000000000-3");
        for bad in ["", "12", "a-1", "1-", "-1", "1-2-3", "1--2"] {
            assert!(bad.parse::<EntryId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_predecessor_is_just_below() {
        assert_eq!(id("5-3").predecessor(), id("5-2"));
        assert_eq!(
            id("5-0").predecessor().to_string(),
            format!("4-{}", u64::MAX)
        );
        assert_eq!(EntryId::ZERO.predecessor(), EntryId::ZERO);
    }
}
