//! Fault injection between nodes: a shared rule set consulted before a request is sent.
//!
//! A dropped request is never sent (the caller times out, as across a real partition); a delayed
//! one is sent later. Rules apply per direction `(from, to)`; [`NetworkFilter::partition`] blocks
//! both directions between two groups. Production nodes run without a filter.

use kai_proto::NodeId;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it now.
    Deliver,
    /// Never send it.
    Drop,
    /// Send it after this long.
    Delay(Duration),
}

#[derive(Default)]
struct Rules {
    blocked: HashSet<(NodeId, NodeId)>,
    delays: HashMap<(NodeId, NodeId), Duration>,
}

/// Shared, mutable fault rules. Cheap to clone; all clones see the same rules.
#[derive(Clone, Default)]
pub struct NetworkFilter(Arc<RwLock<Rules>>);

impl NetworkFilter {
    /// A filter that delivers everything until rules are added.
    pub fn new() -> Self {
        Self::default()
    }

    fn rules(&self) -> std::sync::RwLockWriteGuard<'_, Rules> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops everything between `left` and `right`, both ways.
    pub fn partition(&self, left: &[NodeId], right: &[NodeId]) {
        let mut rules = self.rules();
        for &a in left {
            for &b in right {
                rules.blocked.insert((a, b));
                rules.blocked.insert((b, a));
            }
        }
    }

    /// Drops requests from `from` to `to` (one direction).
    pub fn block(&self, from: NodeId, to: NodeId) {
        self.rules().blocked.insert((from, to));
    }

    /// Delays requests from `from` to `to` by `delay`.
    pub fn delay(&self, from: NodeId, to: NodeId, delay: Duration) {
        self.rules().delays.insert((from, to), delay);
    }

    /// Removes every rule.
    pub fn heal(&self) {
        let mut rules = self.rules();
        rules.blocked.clear();
        rules.delays.clear();
    }

    /// The fate of a request from `from` to `to`.
    pub fn verdict(&self, from: NodeId, to: NodeId) -> Verdict {
        let rules = self.0.read().unwrap_or_else(|p| p.into_inner());
        if rules.blocked.contains(&(from, to)) {
            Verdict::Drop
        } else if let Some(delay) = rules.delays.get(&(from, to)) {
            Verdict::Delay(*delay)
        } else {
            Verdict::Deliver
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_block_both_ways_until_healed() {
        let f = NetworkFilter::new();
        let (a, b, c) = (NodeId(1), NodeId(2), NodeId(3));
        f.partition(&[a], &[b, c]);
        f.delay(b, c, Duration::from_millis(5));
        assert_eq!(f.verdict(a, b), Verdict::Drop);
        assert_eq!(f.verdict(c, a), Verdict::Drop);
        assert_eq!(f.verdict(b, c), Verdict::Delay(Duration::from_millis(5)));
        assert_eq!(f.verdict(c, b), Verdict::Deliver);
        f.heal();
        assert_eq!(f.verdict(a, b), Verdict::Deliver);
    }
}
