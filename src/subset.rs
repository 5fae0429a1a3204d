//! Sets of players: the keys of every sparse representation (Fourier frequencies, Möbius
//! coalitions, interactions).

use serde::{Deserialize, Serialize};

/// A set of player indices, kept sorted and free of duplicates.
///
/// It serialises as a plain JSON list of integers (`[0, 5, 17]`, `[]` for the empty set), the
/// form the output schema promises.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize)]
#[serde(from = "Vec<u32>", into = "Vec<u32>")]
pub struct Subset(Vec<u32>);

impl Subset {
    /// The empty set.
    pub fn empty() -> Self {
        Subset(Vec::new())
    }

    /// A set from any list of players (sorted and de-duplicated here).
    pub fn new(mut players: Vec<u32>) -> Self {
        players.sort_unstable();
        players.dedup();
        Subset(players)
    }

    /// A set from players already sorted ascending without duplicates (checked in debug builds).
    pub fn from_sorted(players: Vec<u32>) -> Self {
        debug_assert!(players.windows(2).all(|w| w[0] < w[1]), "players must be strictly ascending");
        Subset(players)
    }

    /// The players, ascending.
    pub fn players(&self) -> &[u32] {
        &self.0
    }

    /// Number of players (the interaction's order).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the empty set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `player` is in the set.
    pub fn contains(&self, player: u32) -> bool {
        self.0.binary_search(&player).is_ok()
    }

    /// Whether every player of `self` is in `other`.
    pub fn is_subset_of(&self, other: &Subset) -> bool {
        self.0.iter().all(|&p| other.contains(p))
    }

    /// The set with `player` added.
    pub fn with(&self, player: u32) -> Subset {
        match self.0.binary_search(&player) {
            Ok(_) => self.clone(),
            Err(pos) => {
                let mut v = self.0.clone();
                v.insert(pos, player);
                Subset(v)
            }
        }
    }

    /// Every subset of this set with at most `max_len` players, in order of the bitmask that
    /// selects them. Sets here are small (interaction orders), so the `2^len` walk is fine; it is
    /// refused past 30 players.
    pub fn subsets_up_to(&self, max_len: usize) -> impl Iterator<Item = Subset> + '_ {
        assert!(self.len() <= 30, "refusing to enumerate the subsets of a {}-player set", self.len());
        (0u32..(1u32 << self.len()))
            .filter(move |bits| bits.count_ones() as usize <= max_len)
            .map(move |bits| Subset((0..self.len()).filter(|&i| bits >> i & 1 == 1).map(|i| self.0[i]).collect()))
    }

    /// Every subset of this set.
    pub fn subsets(&self) -> impl Iterator<Item = Subset> + '_ {
        self.subsets_up_to(self.len())
    }
}

impl From<Vec<u32>> for Subset {
    fn from(v: Vec<u32>) -> Self {
        Subset::new(v)
    }
}

impl From<Subset> for Vec<u32> {
    fn from(s: Subset) -> Self {
        s.0
    }
}

impl std::fmt::Display for Subset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{")?;
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{p}")?;
        }
        write!(f, "}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_enumerates() {
        let s = Subset::new(vec![5, 1, 5, 3]);
        assert_eq!(s.players(), &[1, 3, 5]);
        assert_eq!(s.subsets().count(), 8);
        assert_eq!(s.subsets_up_to(1).count(), 4);
        assert!(Subset::new(vec![1, 5]).is_subset_of(&s));
        assert!(!Subset::new(vec![2]).is_subset_of(&s));
        assert_eq!(s.with(2).players(), &[1, 2, 3, 5]);
        assert_eq!(serde_json::to_string(&s).unwrap(), "[1,3,5]");
        assert_eq!(serde_json::from_str::<Subset>("[3,1]").unwrap().players(), &[1, 3]);
    }
}
