//! Which key and how large a value each request uses: uniform or Zipfian keys, and a weighted
//! mix of value sizes.
//!
//! Invariants: every key index is below the key count; Zipfian rank 0 is the most popular key
//! and popularity falls with rank as `1 / rank^theta` (Gray et al., "Quickly generating
//! billion-record synthetic databases", the generator YCSB uses); value sizes are drawn in
//! proportion to their weights.

use anyhow::{bail, Context, Result};
use rand::Rng;

/// How key indexes are drawn.
#[derive(Clone, Debug)]
pub enum KeyChooser {
    /// Every key equally likely.
    Uniform {
        /// Number of keys.
        keys: u64,
    },
    /// Zipfian over the key indexes (index 0 the most popular).
    Zipf(Zipf),
}

impl KeyChooser {
    /// Uniform over `keys` keys, or Zipfian with exponent `theta` if given.
    pub fn new(keys: u64, theta: Option<f64>) -> Result<KeyChooser> {
        if keys == 0 {
            bail!("need at least one key");
        }
        Ok(match theta {
            None => KeyChooser::Uniform { keys },
            Some(theta) => KeyChooser::Zipf(Zipf::new(keys, theta)?),
        })
    }

    /// Draws a key index.
    pub fn next(&self, rng: &mut impl Rng) -> u64 {
        match self {
            KeyChooser::Uniform { keys } => rng.random_range(0..*keys),
            KeyChooser::Zipf(z) => z.sample(rng.random::<f64>()),
        }
    }
}

/// Zipfian distribution over `0..n` with exponent `theta` in (0, 1).
#[derive(Clone, Debug)]
pub struct Zipf {
    n: u64,
    theta: f64,
    zeta_n: f64,
    alpha: f64,
    eta: f64,
}

impl Zipf {
    /// Precomputes the distribution (O(n): sums `1 / i^theta`, about 20 ns per key).
    pub fn new(n: u64, theta: f64) -> Result<Zipf> {
        if !(theta > 0.0 && theta < 1.0) {
            bail!("the Zipf exponent must be between 0 and 1 (exclusive), got {theta}");
        }
        let zeta = |count: u64| (1..=count).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zeta_n = zeta(n);
        let zeta_2 = zeta(2.min(n));
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Ok(Zipf {
            n,
            theta,
            zeta_n,
            alpha: 1.0 / (1.0 - theta),
            eta,
        })
    }

    /// The index for a uniform sample `u` in [0, 1).
    pub fn sample(&self, u: f64) -> u64 {
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }

    /// Probability of the most popular key.
    #[cfg(test)]
    pub fn top_probability(&self) -> f64 {
        1.0 / self.zeta_n
    }
}

/// Value sizes with weights, parsed from `100` or `100:80,1000:15,10000:5` (size:weight).
#[derive(Clone, Debug, PartialEq)]
pub struct ValueSizes {
    sizes: Vec<(usize, u32)>,
    total_weight: u32,
}

impl ValueSizes {
    /// Parses the option's text.
    pub fn parse(text: &str) -> Result<ValueSizes> {
        let mut sizes = Vec::new();
        for part in text.split(',') {
            let (size, weight) = part.split_once(':').unwrap_or((part, "1"));
            let size: usize = size
                .trim()
                .parse()
                .with_context(|| format!("bad value size `{size}`"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("bad weight `{weight}`"))?;
            if weight > 0 {
                sizes.push((size, weight));
            }
        }
        let total_weight = sizes.iter().map(|(_, w)| w).sum();
        if total_weight == 0 {
            bail!("no value size with a positive weight in `{text}`");
        }
        Ok(ValueSizes { sizes, total_weight })
    }

    /// The largest size.
    pub fn max(&self) -> usize {
        self.sizes.iter().map(|(s, _)| *s).max().unwrap_or(0)
    }

    /// Mean size, weighted.
    pub fn mean(&self) -> f64 {
        let sum: f64 = self.sizes.iter().map(|(s, w)| *s as f64 * f64::from(*w)).sum();
        sum / f64::from(self.total_weight)
    }

    /// Draws a size.
    pub fn next(&self, rng: &mut impl Rng) -> usize {
        let mut pick = rng.random_range(0..self.total_weight);
        for (size, weight) in &self.sizes {
            if pick < *weight {
                return *size;
            }
            pick -= weight;
        }
        self.sizes.last().map_or(0, |(s, _)| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const SAMPLES: usize = 200_000;

    fn counts(chooser: &KeyChooser, keys: usize) -> Vec<usize> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = vec![0; keys];
        for _ in 0..SAMPLES {
            counts[chooser.next(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipf_rank_zero_has_its_share_and_popularity_falls_with_rank() {
        let zipf = Zipf::new(1000, 0.99).expect("valid");
        let counts = counts(&KeyChooser::Zipf(zipf.clone()), 1000);
        let top = counts[0] as f64 / SAMPLES as f64;
        assert!(
            (top - zipf.top_probability()).abs() < 0.01,
            "top {top} vs {}",
            zipf.top_probability()
        );
        // Rank 1 is about 1/2^0.99 as popular as rank 0; the tail is far below the head.
        let ratio = counts[1] as f64 / counts[0] as f64;
        assert!((ratio - 0.5f64.powf(0.99)).abs() < 0.05, "rank1/rank0 = {ratio}");
        let head: usize = counts[..10].iter().sum();
        let tail: usize = counts[990..].iter().sum();
        assert!(head > 20 * tail, "head {head} tail {tail}");
    }

    #[test]
    fn zipf_never_leaves_the_key_range() {
        let zipf = Zipf::new(3, 0.5).expect("valid");
        for u in [0.0, 0.3, 0.6, 0.999_999_9] {
            assert!(zipf.sample(u) < 3);
        }
        let one = Zipf::new(1, 0.9).expect("valid");
        assert_eq!(one.sample(0.99), 0);
        assert!(Zipf::new(10, 1.0).is_err());
        assert!(Zipf::new(10, 0.0).is_err());
    }

    #[test]
    fn uniform_keys_are_flat() {
        let counts = counts(&KeyChooser::new(10, None).expect("valid"), 10);
        for c in counts {
            assert!((c as f64 / SAMPLES as f64 - 0.1).abs() < 0.01);
        }
    }

    #[test]
    fn value_sizes_follow_their_weights() {
        let sizes = ValueSizes::parse("100:80,1000:15,10000:5").expect("valid");
        assert_eq!(sizes.max(), 10_000);
        assert!((sizes.mean() - (80.0 + 150.0 + 500.0)).abs() < 1e-9);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let big = (0..SAMPLES).filter(|_| sizes.next(&mut rng) == 10_000).count();
        assert!((big as f64 / SAMPLES as f64 - 0.05).abs() < 0.005);
        assert_eq!(ValueSizes::parse("42").expect("valid").next(&mut rng), 42);
        assert!(ValueSizes::parse("100:0").is_err());
        assert!(ValueSizes::parse("x").is_err());
    }
}
