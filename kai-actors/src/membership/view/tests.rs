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
            from: id(2),
            rings: vec![],
            nodes: vec![old_me],
            flush: None,
        },
        0,
    );
    assert_eq!(a.my_state().intent, Intent::Member);
    assert_eq!(a.my_state().incarnation, 8);
}

#[test]
fn its_own_state_gossiped_back_leaves_a_nodes_incarnation_alone() {
    let mut a = View::new(state(1), vec![], TIMEOUTS, 0);
    let mut b = View::new(state(2), vec![], TIMEOUTS, 0);
    for round in 1..=5 {
        a.beat(round * 1000);
        b.merge(a.gossip(), round * 1000);
        a.merge(b.gossip(), round * 1000);
    }
    assert_eq!(a.my_state().incarnation, 1, "an echo is not news of another run");
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
        from: id(2),
        rings: vec![ring(1, 1, &[1, 2, 3]), ring(2, 1, &[1])],
        nodes: vec![],
        flush: None,
    };
    assert!(!a.merge(older_proposal, 0));
    // A peer that settled ring 2 ends our transition.
    assert!(a.merge(
        GossipState {
            from: id(2),
            rings: vec![ring(2, 2, &[1, 2, 3, 4])],
            nodes: vec![],
            flush: None,
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
    assert!(
        views[0].plan(0).is_none(),
        "second-hand news of an unknown node does not show it alive"
    );
    joiner.beat(1_000);
    views[1].merge(joiner.gossip(), 1_000);
    let g = views[1].gossip();
    views[0].merge(g, 1_000);
    let proposal = views[0]
        .plan(1_000)
        .expect("node 1 proposes the join once the joiner's news grows");
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

/// Nodes 1–3 (ring 1) that proposed ring 2 adding node 4, node 4 that learned it from node 1, and
/// ring 2.
fn joining_node_four() -> (Vec<View>, View, RingState) {
    let mut views = cluster(&[1, 2, 3], &ring(1, 1, &[1, 2, 3]));
    let next = ring(2, 1, &[1, 2, 3, 4]);
    for v in views.iter_mut() {
        v.propose(next.clone(), 0);
    }
    let mut joiner = View::new(state(4), vec![], TIMEOUTS, 0);
    joiner.merge(views[0].gossip(), 0);
    (views, joiner, next)
}

#[test]
fn the_barrier_waits_for_every_coordinator_to_adopt_the_newest_ring() {
    let (mut views, joiner, next) = joining_node_four();
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

/// Forgetting period used by the ghost timelines (ten `down_after`, as the actor does).
const FORGET_AFTER: u64 = 10 * TIMEOUTS.down_after_ms;

/// At each of `times`, every view beats, gossips with every other, makes the proposal it is due
/// to make, adopts and syncs the newest ring at once, settles and forgets departed nodes.
fn run(views: &mut [View], times: impl IntoIterator<Item = u64>) {
    for t in times {
        for v in views.iter_mut() {
            v.beat(t);
        }
        exchange_all(views, t);
        for v in views.iter_mut() {
            if let Some(proposal) = v.plan(t) {
                v.propose(proposal, t);
            }
        }
        exchange_all(views, t);
        for v in views.iter_mut() {
            if let Some(latest) = v.latest().map(|r| r.id) {
                if v.my_state().synced < latest {
                    v.set_adopted(latest);
                    v.set_synced(latest);
                }
            }
        }
        exchange_all(views, t);
        for v in views.iter_mut() {
            v.settle();
            v.forget_departed(t, FORGET_AFTER);
        }
    }
}

#[test]
fn a_forgotten_departed_node_is_not_brought_back_by_a_peer_that_still_remembers_it() {
    let mut views = cluster(&[1, 2, 3], &ring(1, 1, &[1, 2, 3]));
    // Node 3's last heartbeat reaches node 2 at 1 s, and node 1 (through node 2) at 2 s; then
    // node 3 stops for good and is removed after down_after.
    let mut last = views[2].clone();
    last.beat(1_000);
    views[1].merge(last.gossip(), 1_000);
    views.truncate(2);
    run(&mut views, (2..=40).map(|i| i * 1_000));
    for v in &views {
        assert_eq!(
            v.rings().iter().map(|r| r.ids()).collect::<Vec<_>>(),
            vec![vec![id(1), id(2)]]
        );
    }
    // Node 2 forgets node 3 first; node 1, which still remembers it, gossips its last state.
    let t = FORGET_AFTER + 1_500;
    views[1].beat(t);
    views[1].forget_departed(t, FORGET_AFTER);
    assert!(views[1].node(id(3)).is_none(), "node 2 forgot node 3");
    assert!(views[0].node(id(3)).is_some(), "node 1 still remembers node 3");
    let g = views[0].gossip();
    views[1].merge(g, t);
    assert!(
        views[1].node(id(3)).is_none(),
        "old news of a forgotten node is ignored"
    );
    // For many down_after periods more, node 3 is neither known nor in a ring again.
    for step in 0..300 {
        let t = FORGET_AFTER + 2_000 + step * 1_000;
        run(&mut views, [t]);
        for v in &views {
            assert!(v.rings().iter().all(|r| !r.contains(id(3))), "node 3 re-added at {t}");
            if t > FORGET_AFTER + 2_500 {
                assert!(v.node(id(3)).is_none(), "node 3 known again at {t}");
            }
        }
    }
}

#[test]
fn a_restarted_node_learning_of_a_departed_node_second_hand_does_not_revive_it() {
    let mut departed = state(3);
    departed.heartbeat = 9;
    let mut peer = View::new(state(2), vec![ring(2, 1, &[1, 2])], TIMEOUTS, 0);
    peer.merge(
        GossipState {
            from: id(3),
            rings: vec![],
            nodes: vec![departed.clone()],
            flush: None,
        },
        0,
    );
    // Node 1 restarts (empty memory) and hears from node 2, which still remembers node 3.
    let mut restarted = View::new(state(1), vec![ring(2, 1, &[1, 2])], TIMEOUTS, 100_000);
    restarted.merge(peer.gossip(), 100_000);
    assert_eq!(restarted.liveness(id(3), 100_000), Liveness::Down);
    assert!(restarted.plan(100_000).is_none(), "the departed node is not proposed");
    restarted.forget_departed(100_000, FORGET_AFTER);
    assert!(restarted.node(id(3)).is_none());
    // Real news, newer than what was forgotten, does count, even second-hand.
    departed.heartbeat += 1;
    peer.merge(
        GossipState {
            from: id(3),
            rings: vec![],
            nodes: vec![departed],
            flush: None,
        },
        101_000,
    );
    restarted.merge(peer.gossip(), 101_000);
    assert_eq!(restarted.liveness(id(3), 101_000), Liveness::Alive);
    assert_eq!(
        restarted.plan(101_000).map(|r| r.ids()),
        Some(vec![id(1), id(2), id(3)])
    );
}

#[test]
fn tombstones_of_forgotten_nodes_expire_and_are_bounded() {
    let mut view = View::new(state(1), vec![ring(1, 1, &[1])], TIMEOUTS, 0);
    let many = (MAX_FORGOTTEN + 10) as u64;
    view.merge(
        GossipState {
            from: id(2),
            rings: vec![],
            nodes: (2..2 + many).map(state).collect(),
            flush: None,
        },
        0,
    );
    view.forget_departed(FORGET_AFTER + 1, FORGET_AFTER);
    assert_eq!(view.nodes().count(), 1);
    assert_eq!(view.forgotten.len(), MAX_FORGOTTEN);
    view.forget_departed(2 * FORGET_AFTER + 2, FORGET_AFTER);
    assert!(view.forgotten.is_empty());
}

#[test]
fn a_restarted_node_sees_no_majority_until_it_has_news_of_one() {
    let members = [1, 2, 3, 4, 5];
    let first = ring(1, 1, &members);
    let mut others = cluster(&members, &first);
    let mut restarted = View::new(state(1), vec![first], TIMEOUTS, 50_000);
    assert!(!restarted.majority_alive(50_000), "no news yet: a minority");
    for v in others.iter_mut() {
        v.beat(50_000);
    }
    exchange_all(&mut others, 50_000);
    // Node 2 answers: first-hand news of node 2 only (the others' states are second-hand news
    // of nodes this fresh view knows nothing of).
    restarted.merge(others[1].gossip(), 50_000);
    assert!(!restarted.majority_alive(50_000), "itself and node 2 are 2 of 5");
    for v in others.iter_mut() {
        v.beat(51_000);
    }
    exchange_all(&mut others, 51_000);
    restarted.merge(others[1].gossip(), 51_000);
    assert!(restarted.majority_alive(51_000), "newer news of every node");
}

#[test]
fn the_barrier_waits_for_a_silent_member_until_a_newer_ring_removes_it() {
    let (mut views, joiner, next) = joining_node_four();
    // Node 3 falls silent before adopting ring 2; the others adopt it.
    let mut live = vec![views.remove(0), views.remove(0), joiner];
    for v in live.iter_mut() {
        v.set_adopted(next.id);
    }
    exchange_all(&mut live, 0);
    for t in [10_000, 20_000, 31_000] {
        for v in live.iter_mut() {
            v.beat(t);
        }
        exchange_all(&mut live, t);
    }
    assert_eq!(live[0].liveness(id(3), 31_000), Liveness::Down);
    assert!(
        !live[0].barrier_reached(31_000),
        "node 3 is silent, not known dead: it may still coordinate with ring 1"
    );
    // The proposer removes it; once the others adopt ring 3, node 3 is no longer waited for,
    // although rings 1 and 2, which still list it, stay active until ring 3 settles.
    let third = live[0].plan(31_000).expect("remove the silent node");
    assert_eq!(third.ids(), vec![id(1), id(2), id(4)]);
    live[0].propose(third.clone(), 31_000);
    exchange_all(&mut live, 31_000);
    for v in live.iter_mut() {
        v.set_adopted(third.id);
    }
    exchange_all(&mut live, 31_000);
    assert_eq!(live[0].rings().len(), 3);
    assert!(live.iter().all(|v| v.barrier_reached(31_000)));
}

#[test]
fn a_node_that_stalled_removes_nobody_for_its_own_silence() {
    // Node 1 (the lowest id: the proposer) is paused from 1 s to 60 s. When it resumes, node 2's
    // news arrives first; nodes 3..5 have not been heard for 59 s, from node 1's stale clock.
    let first = ring(1, 1, &[1, 2, 3, 4, 5]);
    let mut views = cluster(&[1, 2, 3, 4, 5], &first);
    let mut paused = views.remove(0);
    let now = 60_000;
    views[0].beat(now);
    paused.merge(views[0].gossip(), now);
    assert_eq!(paused.liveness(id(3), now), Liveness::Down, "the stale measurement");
    paused.forgive_stall(1_000, now);
    for n in 3..=5 {
        assert_eq!(paused.liveness(id(n), now), Liveness::Suspect, "node {n}");
    }
    assert_eq!(paused.liveness(id(2), now), Liveness::Alive, "fresh news is kept");
    assert!(!paused.majority_alive(now), "no majority before fresh news of one");
    assert_eq!(paused.plan(now), None, "no proposal from a stale view");
}
