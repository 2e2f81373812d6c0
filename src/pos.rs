//! Generation ids and replication positions.
use std::fmt;
use std::str::FromStr;

/// A generation id: 8 random bytes, written as 16 lowercase hex characters. A generation
/// names one unbroken chain of WAL history that starts with a snapshot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u64);

impl Generation {
    /// A new random generation id (from the OS's random source).
    pub fn random() -> Generation {
        let mut b = [0u8; 8];
        // getrandom only fails when the OS has no random source at all; fall back to the
        // clock so a generation can still be created (ids need to be unique, not secret).
        if getrandom::fill(&mut b).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            b = (t ^ u64::from(std::process::id()).rotate_left(32)).to_be_bytes();
        }
        Generation(u64::from_be_bytes(b))
    }

    /// Parses exactly 16 lowercase hex characters, as Litestream's reader accepts.
    pub fn parse(s: &str) -> Option<Generation> {
        if s.len() != 16
            || !s
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(Generation)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl serde::Serialize for Generation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Generation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Generation, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Generation::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid generation {s:?}")))
    }
}

impl FromStr for Generation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Generation::parse(s)
            .ok_or_else(|| format!("invalid generation {s:?}: want 16 lowercase hex characters"))
    }
}

/// The largest WAL index a generation may use (Litestream's limit).
pub const MAX_INDEX: u32 = 0x7FFF_FFFF;

/// A position in the replicated WAL stream: generation, shadow WAL index, and byte offset
/// inside that shadow WAL file (the first frame is at offset 32, after the WAL header).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pos {
    /// The generation (a lineage of the database starting at one snapshot).
    pub generation: Generation,
    /// The shadow WAL index (one per WAL cycle; at most [`MAX_INDEX`]).
    pub index: u32,
    /// Bytes into that shadow WAL file.
    pub offset: u64,
}

impl Pos {
    /// A position at the start of `index`.
    pub fn new(generation: Generation, index: u32, offset: u64) -> Pos {
        Pos {
            generation,
            index,
            offset,
        }
    }
}

/// Positions of one generation are ordered by (index, offset); positions of different
/// generations are unordered (`<`, `>`, `<=` and `>=` are all false for them).
impl PartialOrd for Pos {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        if self.generation != other.generation {
            return None;
        }
        Some((self.index, self.offset).cmp(&(other.index, other.offset)))
    }
}

impl fmt::Display for Pos {
    /// Litestream's log form: `<generation>/<index %08x>:<offset>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:08x}:{}", self.generation, self.index, self.offset)
    }
}

impl fmt::Debug for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_round_trip_and_grammar() {
        let g = Generation::parse("e30b4b636b0988ea").unwrap();
        assert_eq!(g.to_string(), "e30b4b636b0988ea");
        assert!(
            Generation::parse("E30B4B636B0988EA").is_none(),
            "uppercase rejected"
        );
        assert!(
            Generation::parse("e30b4b636b0988e").is_none(),
            "15 chars rejected"
        );
        assert!(
            Generation::parse("e30b4b636b0988eaa").is_none(),
            "17 chars rejected"
        );
        assert!(Generation::parse("+30b4b636b0988ea").is_none());
        assert_eq!(Generation(1).to_string(), "0000000000000001");
        assert_ne!(Generation::random(), Generation::random());
    }

    #[test]
    fn pos_display_matches_litestream() {
        let p = Pos::new(Generation::parse("e30b4b636b0988ea").unwrap(), 3, 193672);
        assert_eq!(p.to_string(), "e30b4b636b0988ea/00000003:193672");
    }
}
