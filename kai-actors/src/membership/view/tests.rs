use super::*;

const TIMEOUTS: Timeouts = Timeouts {
    suspect_after_ms: 3_000,
    down_after_ms: 30_000,
};

fn id(n: u64) -> NodeId {
    NodeId(n)
}

fn state(n: u64) -> NodeState {
    NodeState {
        id: id(n),
        name: format!("n{n}"),
        addr: format!("127.0.0.1:{}", 10_000 + n),
        incarnation: 1,
        heartbeat: 0,
        intent: Intent::Member,
        adopted: RingId::default(),
        synced: RingId::default(),
        data_id: n,
    }
}

fn member(n: u64) -> RingMember {
    RingMember {
        id: id(n),
        name: format!("n{n}"),
        addr: format!("127.0.0.1:{}", 10_000 + n),
    }
}

fn ring(version: u64, proposer: u64, members: &[u64]) -> RingState {
    RingState::new(
        RingId {
            version,
            proposer: id(proposer),
        },
        members.iter().map(|&n| member(n)).collect(),
    )
}

/// Views of nodes `members` that all know `first` and each other, at time 0.
fn cluster(members: &[u64], first: &RingState) -> Vec<View> {
    let mut views: Vec<View> = members
        .iter()
        .map(|&n| View::new(state(n), vec![first.clone()], TIMEOUTS, 0))
        .collect();
    exchange_all(&mut views, 0);
    views
}

/// Every view gossips with every other (both directions).
fn exchange_all(views: &mut [View], now: u64) {
    for i in 0..views.len() {
        for j in 0..views.len() {
            if i != j {
                let g = views[i].gossip();
                views[j].merge(g, now);
            }
        }
    }
}

#[test]
fn newer_node_news_wins_and_refreshes_liveness() {
    let mut a = View::new(state(1), vec![ring(1, 1, &[1, 2])], TIMEOUTS, 0);
    let mut b = View::new(state(2), vec![ring(1, 1, &[1, 2])], TIMEOUTS, 0);
    a.merge(b.gossip(), 0);
    assert_eq!(a.liveness(id(2), 2_000), Liveness::Alive);
    assert_eq!(a.liveness(id(2), 5_000), Liveness::Suspect);
    assert_eq!(a.liveness(id(2), 31_000), Liveness::Down);
    b.beat(31_000);
    a.merge(b.gossip(), 31_000);
    assert_eq!(a.liveness(id(2), 32_000), Liveness::Alive);
    // Old news does not refresh anything.
    let stale = View::new(state(2), vec![], TIMEOUTS, 0).gossip();
    a.merge(stale, 62_000);
    assert_eq!(a.node(id(2)).map(|s| s.heartbeat), Some(1));
    assert_eq!(a.liveness(id(2), 62_000), Liveness::Down);
}

#[test]
fn a_node_never_accepts_news_about_itself_but_outgrows_old_incarnations() {
    let mut a = View::new(state(1), vec![], TIMEOUTS, 0);
    let mut old_me = state(1);
    old_me.incarnation = 7;
    old_me.intent = Intent::Leave;
    a.merge(
        GossipState {
            rings: vec![],
            nodes: vec![old_me],
        },
        0,
    );
    assert_eq!(a.my_state().intent, Intent::Member);
    assert_eq!(a.my_state().incarnation, 8);
}

#[test]
fn newer_rings_are_added_and_settled_rings_replace_older_ones() {
    let mut a = View::new(state(1), vec![ring(1, 1, &[1, 2, 3])], TIMEOUTS, 0);
    let mut b = a.clone();
    assert!(b.propose(ring(2, 2, &[1, 2, 3, 4]), 0));
    assert!(a.merge(b.gossip(), 0));
    assert_eq!(a.rings().len(), 2);
    // An older or equal proposal changes nothing.
    let older_proposal = GossipState {
        rings: vec![ring(1, 1, &[1, 2, 3]), ring(2, 1, &[1])],
        nodes: vec![],
    };
    assert!(!a.merge(older_proposal, 0));
    // A peer that settled ring 2 ends our transition.
    assert!(a.merge(
        GossipState {
            rings: vec![ring(2, 2, &[1, 2, 3, 4])],
            nodes: vec![]
        },
        0
    ));
    assert_eq!(a.rings().iter().map(|r| r.id.version).collect::<Vec<_>>(), vec![2]);
    // Concurrent proposals of one version: the higher proposer wins everywhere.
    let mut c = a.clone();
    c.propose(ring(3, 1, &[1, 2, 3, 4, 5]), 0);
    a.propose(ring(3, 9, &[1, 2, 3, 4, 6]), 0);
    a.merge(c.gossip(), 0);
    c.merge(a.gossip(), 0);
    assert_eq!(a.latest().map(|r| r.id), c.latest().map(|r| r.id));
    assert_eq!(a.latest().map(|r| r.id.proposer), Some(id(9)));
}

#[test]
fn only_the_lowest_live_member_proposes_and_only_with_a_majority() {
    let first = ring(1, 1, &[1, 2, 3]);
    let mut views = cluster(&[1, 2, 3], &first);
    let mut joiner = View::new(state(4), vec![], TIMEOUTS, 0);
    joiner.merge(views[0].gossip(), 0);
    views[1].merge(joiner.gossip(), 0);
    let g = views[1].gossip();
    views[0].merge(g, 0);
    assert!(views[1].plan(0).is_none(), "node 2 is not the proposer");
    let proposal = views[0].plan(0).expect("node 1 proposes the join");
    assert_eq!(proposal.ids(), vec![id(1), id(2), id(3), id(4)]);
    assert_eq!(proposal.id.version, 2);
    // Without hearing from the others, node 1 has no majority and proposes nothing.
    assert!(views[0].plan(20_000).is_none());
}

#[test]
fn dead_members_are_removed_after_down_after_and_leavers_when_settled() {
    let first = ring(1, 1, &[1, 2, 3, 4]);
    let mut views = cluster(&[1, 2, 3, 4], &first);
    // Nodes 1..3 keep beating; node 4 is silent.
    for t in [10_000, 20_000, 31_000] {
        for v in views.iter_mut().take(3) {
            v.beat(t);
        }
        let (live, _) = views.split_at_mut(3);
        exchange_all(live, t);
    }
    assert_eq!(views[0].liveness(id(4), 31_000), Liveness::Down);
    let proposal = views[0].plan(31_000).expect("remove the dead node");
    assert_eq!(proposal.ids(), vec![id(1), id(2), id(3)]);

    let mut views = cluster(&[1, 2, 3], &ring(1, 1, &[1, 2, 3]));
    views[2].set_intent(Intent::Leave);
    let g = views[2].gossip();
    views[0].merge(g, 0);
    assert_eq!(views[0].plan(0).map(|r| r.ids()), Some(vec![id(1), id(2)]));
}

#[test]
fn during_a_transition_only_dead_members_are_removed() {
    let mut views = cluster(&[1, 2, 3], &ring(1, 1, &[1, 2, 3]));
    views[0].propose(ring(2, 1, &[1, 2, 3, 4]), 0);
    let mut joiner = View::new(state(5), vec![], TIMEOUTS, 0);
    joiner.merge(views[0].gossip(), 0);
    views[0].merge(joiner.gossip(), 0);
    assert!(views[0].plan(0).is_none(), "no join while a transition is in progress");
}

#[test]
fn the_barrier_waits_for_every_coordinator_to_adopt_the_newest_ring() {
    let mut views = cluster(&[1, 2, 3], &ring(1, 1, &[1, 2, 3]));
    let next = ring(2, 1, &[1, 2, 3, 4]);
    for v in views.iter_mut() {
        v.propose(next.clone(), 0);
    }
    let mut joiner = View::new(state(4), vec![], TIMEOUTS, 0);
    joiner.merge(views[0].gossip(), 0);
    views.push(joiner);
    for (i, v) in views.iter_mut().enumerate() {
        if i != 2 {
            v.set_adopted(next.id);
        }
    }
    exchange_all(&mut views, 0);
    assert!(!views[0].barrier_reached(0), "node 3 has not adopted ring 2");
    views[2].set_adopted(next.id);
    exchange_all(&mut views, 0);
    assert!(views.iter().all(|v| v.barrier_reached(0)));
}

#[test]
fn a_transition_settles_when_every_new_member_synced() {
    let mut views = cluster(&[1, 2, 3], &ring(1, 1, &[1, 2, 3]));
    let next = ring(2, 1, &[1, 2]);
    for v in views.iter_mut() {
        v.propose(next.clone(), 0);
    }
    views[0].set_synced(next.id);
    exchange_all(&mut views, 0);
    assert!(!views[2].settle());
    views[1].set_synced(next.id);
    exchange_all(&mut views, 0);
    assert!(views[2].settle(), "node 3 is leaving; only members of ring 2 must sync");
    assert_eq!(views[2].rings().len(), 1);
    // The others learn it by gossip.
    let g = views[2].gossip();
    views[0].merge(g, 0);
    assert_eq!(views[0].rings().len(), 1);
}

#[test]
fn departed_nodes_are_forgotten() {
    let mut views = cluster(&[1, 2], &ring(1, 1, &[1]));
    views[0].forget_departed(100_000, 60_000);
    assert!(views[0].node(id(2)).is_none());
    assert!(views[0].node(id(1)).is_some());
}

/// Push-pull rounds until every one of `n` views has heard a ring that one of them proposed.
fn rounds_to_spread(n: u64, seed: u64) -> usize {
    use rand::{Rng, SeedableRng};
    let members: Vec<u64> = (1..=n).collect();
    let first = ring(1, 1, &members);
    let mut views: Vec<View> = members
        .iter()
        .map(|&m| View::new(state(m), vec![first.clone()], TIMEOUTS, 0))
        .collect();
    let news = ring(2, 1, &members);
    views[0].propose(news.clone(), 0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 1..=100 {
        for i in 0..views.len() {
            let mut j = rng.random_range(0..views.len() - 1);
            if j >= i {
                j += 1;
            }
            let (gi, gj) = (views[i].gossip(), views[j].gossip());
            views[j].merge(gi, 0);
            views[i].merge(gj, 0);
        }
        if views.iter().all(|v| v.latest().map(|r| r.id) == Some(news.id)) {
            return round;
        }
    }
    panic!("news did not spread to {n} nodes in 100 rounds");
}

#[test]
fn news_reaches_every_node_in_logarithmic_rounds() {
    for n in [10u64, 16, 64, 256] {
        let bound = 2 * (n as f64).log2().ceil() as usize + 2;
        for seed in 0..5 {
            let rounds = rounds_to_spread(n, seed);
            assert!(rounds <= bound, "{n} nodes: {rounds} rounds > {bound}");
        }
    }
}
