//! Arithmetic in GF(2^m) with log/antilog tables.

/// Defining polynomials of GF(2^m), m = 2..=20, as bit masks (bit i = coefficient of x^i): the
/// default primitive polynomials of Matlab's `gfprimdf` (lexicographically first with fewest
/// terms, except m = 7, 14, 16), which python `galois` uses for BCH codes. Using the same field
/// makes our BCH generator, and with it the SPEX delay matrix, the reference's bit for bit. Each
/// is primitive, so `x` (= 2) generates the multiplicative group.
const PRIMITIVE: [u32; 19] =
    [7, 11, 19, 37, 67, 137, 285, 529, 1033, 2053, 4179, 8219, 17475, 32771, 69643, 131081, 262183, 524327, 1048585];

/// Smallest supported extension degree.
pub const MIN_M: u32 = 2;
/// Largest supported extension degree (codes of length up to 2^20 − 1).
pub const MAX_M: u32 = 20;

/// The field GF(2^m). Elements are `u32` bit patterns of polynomials in the primitive element α.
#[derive(Clone, Debug)]
pub struct Field {
    m: u32,
    /// Multiplicative order, 2^m − 1.
    order: u32,
    /// `exp[i] = α^i` for i in 0..2·order (doubled so sums of two logs need no reduction).
    exp: Vec<u32>,
    /// `log[x]` for x ≠ 0.
    log: Vec<u32>,
}

impl Field {
    /// GF(2^m) defined by its entry in `PRIMITIVE`. Panics outside `MIN_M..=MAX_M` (callers check).
    pub fn new(m: u32) -> Self {
        assert!((MIN_M..=MAX_M).contains(&m), "GF(2^{m}) is not supported");
        let poly = PRIMITIVE[(m - MIN_M) as usize];
        let order = (1u32 << m) - 1;
        let mut exp = vec![0u32; 2 * order as usize];
        let mut log = vec![0u32; 1 << m];
        let mut x = 1u32;
        for i in 0..order {
            exp[i as usize] = x;
            exp[(i + order) as usize] = x;
            log[x as usize] = i;
            x <<= 1;
            if x >> m & 1 == 1 {
                x ^= poly;
            }
        }
        debug_assert_eq!(x, 1, "the defining polynomial must be primitive");
        Field { m, order, exp, log }
    }

    /// Extension degree m.
    pub fn m(&self) -> u32 {
        self.m
    }

    /// Multiplicative group order 2^m − 1 (the primitive code length).
    pub fn order(&self) -> u32 {
        self.order
    }

    /// α^e for any exponent (reduced mod the group order).
    pub fn alpha_pow(&self, e: u64) -> u32 {
        self.exp[(e % self.order as u64) as usize]
    }

    /// Discrete log of a nonzero element.
    pub fn log(&self, x: u32) -> u32 {
        debug_assert!(x != 0);
        self.log[x as usize]
    }

    /// Product.
    pub fn mul(&self, a: u32, b: u32) -> u32 {
        if a == 0 || b == 0 {
            0
        } else {
            self.exp[(self.log[a as usize] + self.log[b as usize]) as usize]
        }
    }

    /// Multiplicative inverse of a nonzero element.
    pub fn inv(&self, a: u32) -> u32 {
        debug_assert!(a != 0);
        self.exp[((self.order - self.log[a as usize]) % self.order) as usize]
    }

    /// Square (the Frobenius map).
    pub fn square(&self, a: u32) -> u32 {
        self.mul(a, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_a_field() {
        for m in MIN_M..=12 {
            let f = Field::new(m);
            for a in 1..=f.order() {
                assert_eq!(f.mul(a, f.inv(a)), 1, "m={m} a={a}");
            }
            // distributivity on a few elements
            let size = f.order() + 1;
            for (a, b, c) in [(3, 5, 7), (1, 2, 3), (f.order(), 2, 1)] {
                let (a, b, c) = (a % size, b % size, c % size);
                assert_eq!(f.mul(a, b ^ c), f.mul(a, b) ^ f.mul(a, c));
            }
        }
    }
}
