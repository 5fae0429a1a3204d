//! Planted sparse functions: random functions with a known sparse Fourier support, the ground
//! truth that tests, benchmarks and demos recover.

use rand::seq::index::sample;
use rand::Rng;

use crate::mask::MaskSlice;
use crate::subset::Subset;
use crate::transform::Fourier;
use crate::value::ValueFunction;

/// A random sparse Fourier function over `n` players: `terms` distinct frequencies, each of a
/// uniformly random order in `1..=max_degree` with uniformly random players, and coefficients of
/// random sign and magnitude in `[0.5, 1.5)`, plus a constant term of 1.
pub fn planted_fourier(n: usize, terms: usize, max_degree: usize, rng: &mut impl Rng) -> Fourier {
    assert!(n >= 1 && max_degree >= 1, "need players and a degree");
    let max_degree = max_degree.min(n);
    let mut f = Fourier::new(n);
    f.add(Subset::empty(), 1.0);
    let mut guard = 0;
    while f.len() < terms + 1 && guard < 100 * (terms + 1) {
        guard += 1;
        let order = rng.random_range(1..=max_degree);
        let players: Vec<u32> = sample(rng, n, order).into_iter().map(|i| i as u32).collect();
        let key = Subset::new(players);
        if f.get(&key) == 0.0 {
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            f.add(key, sign * rng.random_range(0.5..1.5));
        }
    }
    f
}

/// A value function that evaluates a planted function, optionally adding Gaussian noise of
/// standard deviation `noise_sd` (drawn from its own seeded generator, so runs repeat).
pub struct PlantedGame<R> {
    /// The function being queried.
    pub function: Fourier,
    /// Standard deviation of the additive noise (0 = exact).
    pub noise_sd: f64,
    rng: R,
}

impl<R: Rng> PlantedGame<R> {
    /// Queries `function` with noise of standard deviation `noise_sd` drawn from `rng`.
    pub fn new(function: Fourier, noise_sd: f64, rng: R) -> Self {
        PlantedGame { function, noise_sd, rng }
    }
}

impl<R: Rng> ValueFunction for PlantedGame<R> {
    fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, crate::value::ValueError> {
        let mut values = self.function.eval_batch(masks);
        if self.noise_sd > 0.0 {
            for v in &mut values {
                *v += self.noise_sd * standard_normal(&mut self.rng);
            }
        }
        Ok(values)
    }
}

/// One standard normal draw (Box–Muller).
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
