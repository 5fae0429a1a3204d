//! The embedded demo: a toy sentiment "model" over the 14 words of one review, written as a
//! known sum of interactions so that an explanation can be checked by eye (and by tests). It is
//! what `spex explain` runs with no model or driver given, and what `spex demo-oracle` serves
//! over the driver protocol.

use super::PerMask;
use crate::mask::MaskRef;
use crate::subset::Subset;
use crate::transform::Moebius;

/// The review; each word is a player.
pub const WORDS: [&str; 14] =
    ["i", "did", "not", "like", "the", "plot", "but", "the", "acting", "was", "not", "bad", "at", "all"];

/// The planted Möbius terms `(players, weight)`: the logit gains `weight` when all of `players`
/// are kept. "not like" flips "like"; "not bad" flips "bad", and "at all" strengthens it.
pub const TERMS: [(&[u32], f64); 9] = [
    (&[3], 2.0),              // like
    (&[2, 3], -3.5),          // not × like
    (&[1, 2, 3], -0.5),       // did × not × like
    (&[5], -0.2),             // plot
    (&[8], 0.3),              // acting
    (&[6, 8], 0.8),           // but × acting
    (&[11], -2.0),            // bad
    (&[10, 11], 3.0),         // not × bad
    (&[10, 11, 12, 13], 1.0), // not × bad × at × all
];

/// The demo's positive-sentiment logit for one mask of the words.
pub fn demo_logit(mask: MaskRef<'_>) -> f64 {
    TERMS.iter().filter(|(players, _)| mask.keeps_all(players)).map(|(_, w)| w).sum()
}

/// The demo's exact Möbius representation (the ground truth an explanation should find).
pub fn demo_moebius() -> Moebius {
    Moebius::from_pairs(WORDS.len(), TERMS.iter().map(|(p, w)| (Subset::new(p.to_vec()), *w)))
}

/// The demo as a value function.
pub fn demo_game() -> PerMask<fn(MaskRef<'_>) -> f64> {
    PerMask(demo_logit)
}
