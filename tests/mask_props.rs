//! Property tests for the bit-packed masks, at widths around the 64-bit word boundaries.

use proptest::collection::vec;
use proptest::prelude::*;
use spex::mask::{words_for, Mask, MaskBatch, MaskRef, WORD_BITS};
use spex::subset::Subset;

/// Widths that straddle word boundaries, plus anything up to ~10 000.
fn width() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => prop::sample::select(vec![1usize, 2, 63, 64, 65, 127, 128, 129, 191, 192, 193, 255, 256, 257]),
        1 => 1usize..=10_000,
    ]
}

/// One mask's bits (kept = true), with a random density so that all-zero / all-one words occur.
fn bits(n: usize) -> impl Strategy<Value = Vec<bool>> {
    prop_oneof![vec(any::<bool>(), n), vec(prop::bool::weighted(0.02), n), vec(prop::bool::weighted(0.98), n),]
}

/// A batch as rows of bits: width, then 0..6 rows.
fn rows() -> impl Strategy<Value = (usize, Vec<Vec<bool>>)> {
    width().prop_flat_map(|n| (Just(n), vec(bits(n), 0..6)))
}

fn to_string(bits: &[bool]) -> String {
    bits.iter().map(|&b| if b { '1' } else { '0' }).collect()
}

/// The bits past `n` in the last word of a row.
fn padding(words: &[u64], n: usize) -> u64 {
    match (n % WORD_BITS, words.last()) {
        (0, _) | (_, None) => 0,
        (r, Some(last)) => last & !((1u64 << r) - 1),
    }
}

fn assert_row_matches(row: MaskRef<'_>, bits: &[bool]) -> Result<(), TestCaseError> {
    prop_assert_eq!(row.n(), bits.len());
    prop_assert_eq!(row.words().len(), words_for(bits.len()));
    for (i, &b) in bits.iter().enumerate() {
        prop_assert_eq!(row.get(i), b, "bit {}", i);
    }
    prop_assert_eq!(row.count_kept(), bits.iter().filter(|&&b| b).count());
    let kept: Vec<usize> = bits.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i).collect();
    prop_assert_eq!(row.kept().collect::<Vec<_>>(), kept);
    prop_assert_eq!(padding(row.words(), bits.len()), 0, "padding bits set");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn parse_display_round_trip(b in width().prop_flat_map(bits)) {
        let s = to_string(&b);
        let m = Mask::parse(&s).unwrap();
        prop_assert_eq!(m.to_string(), s.clone());
        prop_assert_eq!(m.as_ref().to_string(), s);
        prop_assert_eq!(&m, &Mask::from_bools(&b));
        assert_row_matches(m.as_ref(), &b)?;
        prop_assert_eq!(m.as_ref().to_mask(), m.clone());
    }

    #[test]
    fn subset_constructors_and_basis_functions(b in width().prop_flat_map(bits), seed in any::<u64>()) {
        let n = b.len();
        let kept: Vec<u32> = (0..n as u32).filter(|&i| b[i as usize]).collect();
        let m = Mask::from_subset(n, &Subset::from_sorted(kept.clone()));
        prop_assert_eq!(&m, &Mask::from_bools(&b));
        // A pseudo-random player list to evaluate the basis functions on.
        let players: Vec<u32> = (0..n as u32).filter(|i| (i.wrapping_mul(2654435761) ^ seed as u32) % 3 == 0).collect();
        let in_mask = players.iter().filter(|&&p| b[p as usize]).count();
        prop_assert_eq!(m.as_ref().parity(&players), in_mask % 2 == 1);
        prop_assert_eq!(m.as_ref().fourier_sign(&players), if in_mask % 2 == 0 { 1.0 } else { -1.0 });
        prop_assert_eq!(m.as_ref().keeps_all(&players), in_mask == players.len());
    }

    #[test]
    fn set_and_xor_keep_padding_clear(b in width().prop_flat_map(bits), flips in vec(any::<prop::sample::Index>(), 0..20)) {
        let n = b.len();
        let mut m = Mask::from_bools(&b);
        let mut want = b.clone();
        for f in &flips {
            let i = f.index(n);
            want[i] = !want[i];
            m.set(i, want[i]);
        }
        assert_row_matches(m.as_ref(), &want)?;
        // XOR with all-ones complements exactly the n live bits.
        m.xor_assign(Mask::ones(n).as_ref());
        let complement: Vec<bool> = want.iter().map(|&x| !x).collect();
        assert_row_matches(m.as_ref(), &complement)?;
        assert_row_matches(Mask::ones(n).as_ref(), &vec![true; n])?;
        assert_row_matches(Mask::zeros(n).as_ref(), &vec![false; n])?;
    }

    #[test]
    fn batch_rows_dense_views_slices_and_chunks((n, rows) in rows(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>(), chunk in 1usize..5) {
        let mut batch = MaskBatch::new(n);
        for r in &rows {
            batch.push(Mask::from_bools(r).as_ref()).unwrap();
        }
        prop_assert_eq!(batch.len(), rows.len());
        for (i, r) in rows.iter().enumerate() {
            assert_row_matches(batch.row(i), r)?;
        }
        prop_assert_eq!(batch.iter().len(), rows.len());

        let all = batch.as_slice();
        prop_assert_eq!(all.words().len(), rows.len() * words_for(n));
        let dense_u8 = all.to_dense_u8();
        let dense_f32 = all.to_dense_f32();
        prop_assert_eq!(dense_u8.len(), rows.len() * n);
        prop_assert_eq!(dense_f32.len(), rows.len() * n);
        for (i, r) in rows.iter().enumerate() {
            for (j, &bit) in r.iter().enumerate() {
                prop_assert_eq!(dense_u8[i * n + j], u8::from(bit));
                prop_assert_eq!(dense_f32[i * n + j], if bit { 1.0 } else { 0.0 });
                prop_assert_eq!(batch.row(i).get(j), bit);
            }
        }

        // A slice view equals the corresponding rows, and its dense form the corresponding block.
        let len = rows.len();
        let (lo, hi) = if len == 0 { (0, 0) } else {
            let (x, y) = (a.index(len + 1), b.index(len + 1));
            (x.min(y), x.max(y))
        };
        let view = batch.slice(lo..hi);
        prop_assert_eq!(view.len(), hi - lo);
        for j in 0..view.len() {
            prop_assert_eq!(view.row(j), batch.row(lo + j));
        }
        prop_assert_eq!(view.to_dense_u8(), dense_u8[lo * n..hi * n].to_vec());
        let owned = view.to_batch();
        prop_assert_eq!(owned.as_slice(), view);

        // Chunks partition the rows in order.
        let chunks: Vec<_> = all.chunks(chunk).collect();
        prop_assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), len);
        prop_assert!(chunks.iter().all(|c| c.len() <= chunk && !c.is_empty()));
        let flattened: Vec<MaskRef<'_>> = chunks.iter().flat_map(|c| c.iter()).collect();
        prop_assert_eq!(flattened, batch.iter().collect::<Vec<_>>());
    }

    #[test]
    fn push_words_clears_padding(n in width(), seed in any::<u64>()) {
        // Garbage in the padding bits must not survive: equality and popcounts depend on it.
        let words: Vec<u64> = (0..words_for(n) as u64).map(|i| seed.rotate_left(i as u32 * 7) ^ 0xA5A5_A5A5_A5A5_A5A5).collect();
        let mut batch = MaskBatch::new(n);
        batch.push_words(&words);
        let row = batch.row(0);
        prop_assert_eq!(padding(row.words(), n), 0);
        let bits: Vec<bool> = (0..n).map(|i| words[i / 64] >> (i % 64) & 1 == 1).collect();
        assert_row_matches(row, &bits)?;
    }

    #[test]
    fn parse_rows_matches_push(( n, rows) in rows()) {
        prop_assume!(!rows.is_empty());
        let strings: Vec<String> = rows.iter().map(|r| to_string(r)).collect();
        let parsed = MaskBatch::parse_rows(strings.iter().map(String::as_str)).unwrap();
        prop_assert_eq!(parsed.n(), n);
        let mut pushed = MaskBatch::new(n);
        for r in &rows {
            pushed.push(Mask::from_bools(r).as_ref()).unwrap();
        }
        prop_assert_eq!(parsed, pushed);
    }
}
