//! Bit-packed masks: the currency between designs, value functions and decoders.
//!
//! A mask over `n` players is a bit vector in which bit `i` is 1 when player `i` is **kept** and
//! 0 when it is **ablated** (the convention of the SPEX reference code). Masks are stored 64 players
//! to a `u64` word, least significant bit first; bits past `n` in the last word are always zero, so
//! word-wise equality, hashing and popcounts are exact.
//!
//! [`MaskBatch`] owns many masks of the same width, one row per mask. [`MaskSlice`] is a cheap,
//! copyable view of consecutive rows (what a value function receives), and [`MaskRef`] a view of
//! one row.

use std::fmt;
use std::ops::Range;

use crate::subset::Subset;

/// Bits per storage word.
pub const WORD_BITS: usize = 64;

/// Number of `u64` words that hold `n` bits.
pub fn words_for(n: usize) -> usize {
    n.div_ceil(WORD_BITS)
}

/// Mask of the valid bits of the last word of an `n`-bit row (all ones when `n` is a multiple of 64).
fn last_word_mask(n: usize) -> u64 {
    match n % WORD_BITS {
        0 => u64::MAX,
        r => (1u64 << r) - 1,
    }
}

/// Errors from building or parsing masks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskError {
    /// A row has a different number of players than the batch.
    #[error("mask has {found} players, expected {expected}")]
    WrongLength {
        /// Width of the batch.
        expected: usize,
        /// Width of the offending row.
        found: usize,
    },
    /// A mask string contains something other than '0' and '1'.
    #[error("invalid character {found:?} at position {position} (masks are strings of '0' and '1')")]
    BadCharacter {
        /// The character found.
        found: char,
        /// 0-based character position in the string.
        position: usize,
    },
    /// A mask has no players.
    #[error("a mask needs at least one player")]
    Empty,
}

/// One owned mask.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Mask {
    n: usize,
    words: Vec<u64>,
}

impl Mask {
    /// All players ablated.
    pub fn zeros(n: usize) -> Self {
        Mask { n, words: vec![0; words_for(n)] }
    }

    /// All players kept.
    pub fn ones(n: usize) -> Self {
        let mut words = vec![u64::MAX; words_for(n)];
        if let Some(last) = words.last_mut() {
            *last &= last_word_mask(n);
        }
        Mask { n, words }
    }

    /// A mask from one `bool` per player (`true` = kept).
    pub fn from_bools(bits: &[bool]) -> Self {
        let mut m = Mask::zeros(bits.len());
        for (i, &b) in bits.iter().enumerate() {
            m.set(i, b);
        }
        m
    }

    /// A mask keeping exactly the players in `players` (indices must be `< n`).
    pub fn from_subset(n: usize, players: &Subset) -> Self {
        let mut m = Mask::zeros(n);
        for &p in players.players() {
            m.set(p as usize, true);
        }
        m
    }

    /// Parses a string of '0' and '1' (one character per player).
    pub fn parse(s: &str) -> Result<Self, MaskError> {
        let mut m = Mask::zeros(s.len());
        for (position, c) in s.chars().enumerate() {
            match c {
                '0' => {}
                '1' => m.set(position, true),
                found => return Err(MaskError::BadCharacter { found, position }),
            }
        }
        if m.n == 0 {
            return Err(MaskError::Empty);
        }
        Ok(m)
    }

    /// Sets player `i` kept (`true`) or ablated (`false`). Panics if `i >= n` (a programming error).
    pub fn set(&mut self, i: usize, kept: bool) {
        assert!(i < self.n, "player {i} out of range for {} players", self.n);
        let bit = 1u64 << (i % WORD_BITS);
        if kept {
            self.words[i / WORD_BITS] |= bit;
        } else {
            self.words[i / WORD_BITS] &= !bit;
        }
    }

    /// XORs another mask of the same width into this one (addition over GF(2)).
    pub fn xor_assign(&mut self, other: MaskRef<'_>) {
        debug_assert_eq!(self.n, other.n);
        for (a, b) in self.words.iter_mut().zip(other.words) {
            *a ^= b;
        }
    }

    /// A borrowed view of this mask.
    pub fn as_ref(&self) -> MaskRef<'_> {
        MaskRef { n: self.n, words: &self.words }
    }

    /// Number of players.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Whether player `i` is kept.
    pub fn get(&self, i: usize) -> bool {
        self.as_ref().get(i)
    }

    /// The packed words (bit `i` of word `w` is player `64 w + i`).
    pub fn words(&self) -> &[u64] {
        &self.words
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

/// A borrowed view of one mask.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MaskRef<'a> {
    n: usize,
    words: &'a [u64],
}

impl<'a> MaskRef<'a> {
    /// Number of players.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The packed words.
    pub fn words(&self) -> &'a [u64] {
        self.words
    }

    /// Whether player `i` is kept.
    pub fn get(&self, i: usize) -> bool {
        (self.words[i / WORD_BITS] >> (i % WORD_BITS)) & 1 == 1
    }

    /// Number of kept players.
    pub fn count_kept(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Parity of the number of kept players among `players`: the sign of the Fourier basis
    /// function `(-1)^{<mask, players>}` is negative exactly when this is `true`.
    pub fn parity(&self, players: &[u32]) -> bool {
        players.iter().fold(false, |acc, &p| acc ^ self.get(p as usize))
    }

    /// `(-1)^{<mask, players>}` as a float.
    pub fn fourier_sign(&self, players: &[u32]) -> f64 {
        if self.parity(players) {
            -1.0
        } else {
            1.0
        }
    }

    /// Whether every player in `players` is kept (the Möbius basis function).
    pub fn keeps_all(&self, players: &[u32]) -> bool {
        players.iter().all(|&p| self.get(p as usize))
    }

    /// Indices of the kept players, ascending.
    pub fn kept(&self) -> impl Iterator<Item = usize> + 'a {
        self.words.iter().enumerate().flat_map(|(w, &word)| BitIter(word).map(move |b| w * WORD_BITS + b))
    }

    /// An owned copy.
    pub fn to_mask(&self) -> Mask {
        Mask { n: self.n, words: self.words.to_vec() }
    }
}

impl fmt::Display for MaskRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(self.n);
        for i in 0..self.n {
            s.push(if self.get(i) { '1' } else { '0' });
        }
        f.write_str(&s)
    }
}

/// Iterates the set bit positions of one word.
struct BitIter(u64);

impl Iterator for BitIter {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(b)
    }
}

/// Many masks over the same `n` players, bit-packed row by row.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MaskBatch {
    n: usize,
    words_per_row: usize,
    rows: usize,
    data: Vec<u64>,
}

impl MaskBatch {
    /// An empty batch of `n`-player masks.
    pub fn new(n: usize) -> Self {
        Self::with_capacity(n, 0)
    }

    /// An empty batch with room for `rows` masks.
    pub fn with_capacity(n: usize, rows: usize) -> Self {
        let words_per_row = words_for(n);
        MaskBatch { n, words_per_row, rows: 0, data: Vec::with_capacity(rows * words_per_row) }
    }

    /// Builds a batch from masks given as strings of '0'/'1'. All rows must have the same width.
    pub fn parse_rows<'s>(rows: impl IntoIterator<Item = &'s str>) -> Result<Self, MaskError> {
        let mut batch: Option<MaskBatch> = None;
        for row in rows {
            let m = Mask::parse(row)?;
            batch.get_or_insert_with(|| MaskBatch::new(m.n())).push(m.as_ref())?;
        }
        batch.ok_or(MaskError::Empty)
    }

    /// Appends one mask; its width must be `n`.
    pub fn push(&mut self, mask: MaskRef<'_>) -> Result<(), MaskError> {
        if mask.n != self.n {
            return Err(MaskError::WrongLength { expected: self.n, found: mask.n });
        }
        self.data.extend_from_slice(mask.words);
        self.rows += 1;
        Ok(())
    }

    /// Appends one mask given as packed words (bits past `n` are cleared).
    pub fn push_words(&mut self, words: &[u64]) {
        assert_eq!(words.len(), self.words_per_row, "row must have {} words", self.words_per_row);
        self.data.extend_from_slice(words);
        if let Some(last) = self.data.last_mut() {
            *last &= last_word_mask(self.n);
        }
        self.rows += 1;
    }

    /// Appends every row of `other` (same width required).
    pub fn extend(&mut self, other: MaskSlice<'_>) -> Result<(), MaskError> {
        if other.n != self.n {
            return Err(MaskError::WrongLength { expected: self.n, found: other.n });
        }
        self.data.extend_from_slice(other.data);
        self.rows += other.rows;
        Ok(())
    }

    /// A view of all rows.
    pub fn as_slice(&self) -> MaskSlice<'_> {
        MaskSlice { n: self.n, words_per_row: self.words_per_row, rows: self.rows, data: &self.data }
    }

    /// A view of rows `range` (no copy). Panics if the range is out of bounds.
    pub fn slice(&self, range: Range<usize>) -> MaskSlice<'_> {
        self.as_slice().slice(range)
    }

    /// Number of players per mask.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of masks.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the batch holds no masks.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> MaskRef<'_> {
        self.as_slice().row(i)
    }

    /// Iterates the rows.
    pub fn iter(&self) -> MaskIter<'_> {
        self.as_slice().iter()
    }
}

/// A borrowed view of consecutive rows of a [`MaskBatch`]; `Copy`, so pass it by value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MaskSlice<'a> {
    n: usize,
    words_per_row: usize,
    rows: usize,
    data: &'a [u64],
}

impl<'a> MaskSlice<'a> {
    /// Number of players per mask.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of masks.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether the view holds no masks.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Words per row (`ceil(n / 64)`).
    pub fn words_per_row(&self) -> usize {
        self.words_per_row
    }

    /// The packed rows, row after row (`len() * words_per_row()` words).
    pub fn words(&self) -> &'a [u64] {
        self.data
    }

    /// Row `i`. Panics if `i >= len()`.
    pub fn row(&self, i: usize) -> MaskRef<'a> {
        assert!(i < self.rows, "row {i} out of range for {} rows", self.rows);
        let w = self.words_per_row;
        MaskRef { n: self.n, words: &self.data[i * w..(i + 1) * w] }
    }

    /// A sub-view of rows `range`. Panics if the range is out of bounds.
    pub fn slice(&self, range: Range<usize>) -> MaskSlice<'a> {
        assert!(range.start <= range.end && range.end <= self.rows, "rows {range:?} out of range for {}", self.rows);
        let w = self.words_per_row;
        MaskSlice { n: self.n, words_per_row: w, rows: range.len(), data: &self.data[range.start * w..range.end * w] }
    }

    /// Iterates the rows.
    pub fn iter(&self) -> MaskIter<'a> {
        MaskIter { slice: *self, next: 0 }
    }

    /// Splits the view into consecutive chunks of at most `rows` masks.
    pub fn chunks(&self, rows: usize) -> impl Iterator<Item = MaskSlice<'a>> + 'a {
        let this = *self;
        let rows = rows.max(1);
        (0..this.rows).step_by(rows).map(move |start| this.slice(start..(start + rows).min(this.rows)))
    }

    /// Dense row-major `len() x n` matrix of 0/1 bytes.
    pub fn to_dense_u8(&self) -> Vec<u8> {
        self.to_dense(0u8, 1u8)
    }

    /// Dense row-major `len() x n` matrix of 0.0/1.0.
    pub fn to_dense_f32(&self) -> Vec<f32> {
        self.to_dense(0.0f32, 1.0f32)
    }

    fn to_dense<T: Copy>(self, zero: T, one: T) -> Vec<T> {
        let mut out = vec![zero; self.rows * self.n];
        for (row, dst) in self.iter().zip(out.chunks_exact_mut(self.n.max(1))) {
            for i in row.kept() {
                dst[i] = one;
            }
        }
        out
    }

    /// An owned copy of these rows.
    pub fn to_batch(&self) -> MaskBatch {
        MaskBatch { n: self.n, words_per_row: self.words_per_row, rows: self.rows, data: self.data.to_vec() }
    }

    /// An owned batch of rows `order[0], order[1], …` of this view (a reordering, a subset or
    /// repeats). Panics if an index is out of range.
    pub fn select(&self, order: &[usize]) -> MaskBatch {
        let mut data = Vec::with_capacity(order.len() * self.words_per_row);
        for &i in order {
            data.extend_from_slice(self.row(i).words);
        }
        MaskBatch { n: self.n, words_per_row: self.words_per_row, rows: order.len(), data }
    }
}

/// Iterator over the rows of a [`MaskSlice`].
#[derive(Clone)]
pub struct MaskIter<'a> {
    slice: MaskSlice<'a>,
    next: usize,
}

impl<'a> Iterator for MaskIter<'a> {
    type Item = MaskRef<'a>;
    fn next(&mut self) -> Option<MaskRef<'a>> {
        if self.next >= self.slice.rows {
            return None;
        }
        self.next += 1;
        Some(self.slice.row(self.next - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.slice.rows - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for MaskIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_format_roundtrip_across_word_boundary() {
        let s: String = (0..130).map(|i| if i % 3 == 0 || i == 129 { '1' } else { '0' }).collect();
        let m = Mask::parse(&s).unwrap();
        assert_eq!(m.to_string(), s);
        assert_eq!(m.as_ref().count_kept(), s.matches('1').count());
        assert_eq!(
            m.as_ref().kept().collect::<Vec<_>>(),
            (0..130).filter(|i| i % 3 == 0 || *i == 129).collect::<Vec<_>>()
        );
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert_eq!(Mask::parse("01x1"), Err(MaskError::BadCharacter { found: 'x', position: 2 }));
        assert_eq!(Mask::parse(""), Err(MaskError::Empty));
        assert_eq!(MaskBatch::parse_rows(["0101", "011"]), Err(MaskError::WrongLength { expected: 4, found: 3 }));
    }

    #[test]
    fn ones_clears_padding_bits() {
        let m = Mask::ones(70);
        assert_eq!(m.words()[1], (1 << 6) - 1);
        assert_eq!(m.as_ref().count_kept(), 70);
    }

    #[test]
    fn dense_and_slices() {
        let b = MaskBatch::parse_rows(["101", "011", "110"]).unwrap();
        assert_eq!(b.as_slice().to_dense_u8(), vec![1, 0, 1, 0, 1, 1, 1, 1, 0]);
        let s = b.slice(1..3);
        assert_eq!(s.len(), 2);
        assert_eq!(s.row(0).to_string(), "011");
        assert_eq!(s.to_dense_f32(), vec![0.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        let chunks: Vec<usize> = b.as_slice().chunks(2).map(|c| c.len()).collect();
        assert_eq!(chunks, vec![2, 1]);
        let picked = b.slice(1..3).select(&[1, 0, 1]);
        let rows: Vec<String> = picked.iter().map(|m| m.to_string()).collect();
        assert_eq!(rows, ["110", "011", "110"]);
    }
}
