//! What a benchmark connection asks for next: the operation mix.
//!
//! Invariants: `get-set` draws gets with probability `get_ratio`, the rest are sets, and with
//! `--multiget K` above 1 each get reads K keys in one request; `add` only
//! ever adds keys nobody has added before (every add should store); `incr` and `cas` work on the
//! prefilled keys; `hot-incr` increments one key from every connection, so the final value must
//! equal the increments acknowledged (see [`lost_increments`]).

use clap::ValueEnum;
use rand::Rng;

/// The operation mixes of `kai bench --mix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mix {
    /// gets and sets (`--get-ratio` of gets).
    GetSet,
    /// `add` of fresh keys.
    Add,
    /// `incr` of random prefilled counters (uncontended).
    Incr,
    /// `gets` then `cas` of random prefilled keys (one operation; `EXISTS` when another
    /// connection changed the key in between).
    Cas,
    /// `incr` of one hot key from every connection; the run checks that no increment is lost.
    HotIncr,
}

impl Mix {
    /// True if the prefilled values are counters (`0`) rather than values of the chosen size.
    pub fn counters(self) -> bool {
        matches!(self, Mix::Incr | Mix::HotIncr)
    }
}

/// Which key an operation addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Prefilled key number `n`.
    Key(u64),
    /// The `n`th fresh key of connection `connection` (for `add`).
    Fresh {
        /// The connection's index.
        connection: usize,
        /// How many fresh keys it used before.
        n: u64,
    },
    /// The one hot counter.
    Hot,
}

/// One benchmark operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `get`.
    Get(Target),
    /// A read of this many prefilled keys in one request (drawn when it is sent).
    MultiGet(usize),
    /// `set` of a value of this size.
    Set(Target, usize),
    /// `add` of a value of this size.
    Add(Target, usize),
    /// `incr` by 1.
    Incr(Target),
    /// `gets` then `cas` with a value of this size.
    Cas(Target, usize),
}

impl Op {
    /// How many keys the operation reads or writes.
    pub fn keys(self) -> u64 {
        match self {
            Op::MultiGet(n) => n as u64,
            _ => 1,
        }
    }
}

/// Draws the operations of one connection.
pub struct Workload {
    mix: Mix,
    get_ratio: f64,
    multiget: usize,
    connection: usize,
    fresh: u64,
}

impl Workload {
    /// The workload of connection `connection`; gets of `get-set` read `multiget` keys.
    pub fn new(mix: Mix, get_ratio: f64, multiget: usize, connection: usize) -> Workload {
        Workload {
            mix,
            get_ratio,
            multiget,
            connection,
            fresh: 0,
        }
    }

    /// The next operation; `key` is a drawn prefilled key's index, `size` a drawn value size
    /// (each used only if the operation needs it).
    pub fn next(&mut self, rng: &mut impl Rng, key: u64, size: usize) -> Op {
        match self.mix {
            Mix::GetSet => {
                let target = Target::Key(key);
                if !rng.random_bool(self.get_ratio) {
                    Op::Set(target, size)
                } else if self.multiget > 1 {
                    Op::MultiGet(self.multiget)
                } else {
                    Op::Get(target)
                }
            }
            Mix::Add => {
                self.fresh += 1;
                Op::Add(
                    Target::Fresh {
                        connection: self.connection,
                        n: self.fresh,
                    },
                    size,
                )
            }
            Mix::Incr => Op::Incr(Target::Key(key)),
            Mix::Cas => Op::Cas(Target::Key(key), size),
            Mix::HotIncr => Op::Incr(Target::Hot),
        }
    }
}

/// Increments lost (positive) or invented (negative) on the hot key: the counter went from 0 to
/// `final_value` while `acknowledged` increments were answered with a number and `unknown` more
/// failed without a clear outcome (each of those may or may not have been applied).
pub fn lost_increments(final_value: u64, acknowledged: u64, unknown: u64) -> i64 {
    if final_value < acknowledged {
        (acknowledged - final_value) as i64
    } else if final_value > acknowledged + unknown {
        -((final_value - acknowledged - unknown) as i64)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn get_set_follows_the_get_ratio() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut w = Workload::new(Mix::GetSet, 0.9, 1, 0);
        let gets = (0..100_000)
            .filter(|_| matches!(w.next(&mut rng, 5, 100), Op::Get(Target::Key(5))))
            .count();
        assert!((gets as f64 / 100_000.0 - 0.9).abs() < 0.01);
    }

    #[test]
    fn multiget_reads_many_keys_per_get_and_leaves_sets_alone() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut w = Workload::new(Mix::GetSet, 0.5, 16, 0);
        let ops: Vec<_> = (0..10_000).map(|_| w.next(&mut rng, 5, 100)).collect();
        let gets = ops.iter().filter(|op| **op == Op::MultiGet(16)).count();
        let sets = ops.iter().filter(|op| **op == Op::Set(Target::Key(5), 100)).count();
        assert_eq!(gets + sets, ops.len());
        assert!((gets as f64 / 10_000.0 - 0.5).abs() < 0.02);
        assert_eq!(Op::MultiGet(16).keys(), 16);
        assert_eq!(Op::Set(Target::Key(5), 100).keys(), 1);
    }

    #[test]
    fn adds_never_repeat_a_key() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut a = Workload::new(Mix::Add, 0.0, 1, 1);
        let mut b = Workload::new(Mix::Add, 0.0, 1, 2);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(a.next(&mut rng, 0, 10)));
            assert!(seen.insert(b.next(&mut rng, 0, 10)));
        }
    }

    #[test]
    fn hot_incr_always_hits_the_hot_key() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut w = Workload::new(Mix::HotIncr, 0.0, 1, 0);
        assert_eq!(w.next(&mut rng, 1, 10), Op::Incr(Target::Hot));
    }

    #[test]
    fn lost_increments_allow_for_unknown_outcomes_only() {
        assert_eq!(lost_increments(100, 100, 0), 0);
        assert_eq!(lost_increments(103, 100, 5), 0, "3 of 5 failed increments were applied");
        assert_eq!(lost_increments(98, 100, 5), 2);
        assert_eq!(lost_increments(107, 100, 5), -2);
    }
}
