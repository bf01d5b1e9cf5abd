//! Timelines of a few nodes' engines gossiping through a simulated network, driven through the
//! engine's events exactly as the Membership actor feeds them: nodes stall, stop, restart (from
//! what they persisted, or from a rolled-back state), leave, and links fail one way.

use super::*;
use kai_proto::tag::{Tag, WriterId};
use std::collections::{BTreeSet, VecDeque};

const INTERVAL: u64 = 1_000;
const DOWN_AFTER: u64 = 10_000;
const FORGET_AFTER: u64 = DOWN_AFTER * FORGET_AFTER_DOWN_AFTERS;

fn member(n: u64) -> RingMember {
    RingMember {
        id: NodeId(n),
        name: format!("n{n}"),
        addr: format!("10.0.0.{n}:7000"),
    }
}

fn settings(n: u64, seeds: &[u64]) -> Settings {
    Settings {
        me: member(n),
        seeds: seeds.iter().map(|s| member(*s)).collect(),
        gossip_interval_ms: INTERVAL,
        down_after_ms: DOWN_AFTER,
        data_id: 100 + n,
    }
}

fn ids(ring: &RingState) -> Vec<u64> {
    ring.members.iter().map(|m| m.id.0).collect()
}

/// One node: its engine and everything it asked its executor to do.
struct Node {
    engine: MembershipEngine,
    seeds: Vec<u64>,
    running: bool,
    /// Simulated time at which this run started: the engine's clock counts from there.
    born: u64,
    /// Every effect of this run, with the simulated time it was asked at.
    log: Vec<(u64, Effect)>,
    /// What its state file holds.
    saved: Persisted,
}

impl Node {
    fn effects(&self) -> impl DoubleEndedIterator<Item = &Effect> {
        self.log.iter().map(|(_, e)| e)
    }

    /// Every set of active rings it published, in order.
    fn published(&self) -> Vec<Vec<RingState>> {
        self.effects()
            .filter_map(|e| match e {
                Effect::PublishRings(rings) => Some(rings.clone()),
                _ => None,
            })
            .collect()
    }

    /// The active rings it published last.
    fn rings(&self) -> Vec<RingState> {
        self.published().pop().unwrap_or_default()
    }

    fn sync_news(&self) -> Vec<SyncNews> {
        self.effects()
            .filter_map(|e| match e {
                Effect::NotifySync(news) => Some(*news),
                _ => None,
            })
            .collect()
    }

    fn current(&self) -> bool {
        let caught_up = self.sync_news().into_iter().rev().find_map(|n| match n {
            SyncNews::CaughtUp { current, .. } => Some(current),
            _ => None,
        });
        caught_up.unwrap_or(false)
    }

    fn majority(&self) -> bool {
        let set = self.effects().rev().find_map(|e| match e {
            Effect::SetMajority(m) => Some(*m),
            _ => None,
        });
        set.unwrap_or(false)
    }

    fn status(&self) -> ClusterStatus {
        let status = self.effects().rev().find_map(|e| match e {
            Effect::PublishStatus(s) => Some(s.clone()),
            _ => None,
        });
        status.unwrap_or_default()
    }

    fn count(&self, wanted: impl Fn(&Effect) -> bool) -> usize {
        self.effects().filter(|e| wanted(e)).count()
    }
}

/// Nodes, a clock, and a network that delivers exchanges in the order they were asked for.
struct Sim {
    nodes: BTreeMap<u64, Node>,
    now: u64,
    /// Exchanges started by the first node towards the second fail.
    cut: BTreeSet<(u64, u64)>,
    /// Whether nodes report `Synced` as soon as the barrier of a ring is reached.
    auto_sync: bool,
    outbox: VecDeque<(u64, u64)>,
}

impl Sim {
    fn new() -> Self {
        Sim {
            nodes: BTreeMap::new(),
            now: 0,
            cut: BTreeSet::new(),
            auto_sync: true,
            outbox: VecDeque::new(),
        }
    }

    /// Fresh nodes `ids`, each listing all of them as seeds, gossiping for `ms`.
    fn cluster(ids: &[u64], ms: u64) -> Self {
        let mut sim = Sim::new();
        for n in ids {
            sim.start(*n, ids, Persisted::default());
        }
        sim.deliver();
        sim.run_for(ms);
        sim
    }

    fn node(&self, n: u64) -> &Node {
        &self.nodes[&n]
    }

    /// Starts a run of node `n` from `saved` (replacing any previous run).
    fn start(&mut self, n: u64, seeds: &[u64], saved: Persisted) {
        self.start_on(settings(n, seeds), seeds, saved);
    }

    fn start_on(&mut self, settings: Settings, seeds: &[u64], saved: Persisted) {
        let n = settings.me.id.0;
        let node = Node {
            engine: MembershipEngine::new(settings, saved.clone(), n),
            seeds: seeds.to_vec(),
            running: true,
            born: self.now,
            log: Vec::new(),
            saved,
        };
        self.nodes.insert(n, node);
        self.on(n, Event::Start);
    }

    /// Kills node `n` and starts it again from `saved`.
    fn restart(&mut self, n: u64, saved: Persisted) {
        let seeds = self.node(n).seeds.clone();
        self.start(n, &seeds, saved);
    }

    /// Kills node `n` and starts it again with an empty data dir of identity `data_id`.
    fn replace_data_dir(&mut self, n: u64, data_id: u64) {
        let seeds = self.node(n).seeds.clone();
        let settings = Settings {
            data_id,
            ..settings(n, &seeds)
        };
        self.start_on(settings, &seeds, Persisted::default());
    }

    fn stop(&mut self, n: u64) {
        if let Some(node) = self.nodes.get_mut(&n) {
            node.running = false;
        }
    }

    /// Feeds `event` to node `n`, and what a Sync actor would answer to its effects.
    fn on(&mut self, n: u64, event: Event) -> Vec<Effect> {
        let mut events = VecDeque::from([event]);
        let mut all = Vec::new();
        while let Some(event) = events.pop_front() {
            let node = self.nodes.get_mut(&n).expect("a simulated node");
            let effects = node.engine.handle(event, self.now - node.born);
            for effect in &effects {
                match effect {
                    Effect::GossipWith(to) => self.outbox.push_back((n, to.0)),
                    Effect::PublishRings(rings) => events.extend(rings.last().map(|r| Event::Adopted(r.id))),
                    Effect::NotifySync(SyncNews::BarrierReached(ring)) if self.auto_sync => {
                        events.push_back(Event::Synced(*ring));
                    }
                    Effect::Persist(saved) => node.saved = saved.clone(),
                    _ => {}
                }
                node.log.push((self.now, effect.clone()));
            }
            all.extend(effects);
        }
        all
    }

    fn reachable(&self, from: u64, to: u64) -> bool {
        let running = |n| self.nodes.get(&n).is_some_and(|node| node.running);
        running(from) && running(to) && !self.cut.contains(&(from, to))
    }

    /// Runs every exchange asked for: the target merges the sender's view, the sender the answer.
    fn deliver(&mut self) {
        while let Some((from, to)) = self.outbox.pop_front() {
            if !self.reachable(from, to) {
                continue;
            }
            let state = self.node(from).engine.gossip();
            self.on(to, Event::Received(state));
            let state = self.node(to).engine.gossip();
            self.on(
                from,
                Event::Answered {
                    from: NodeId(to),
                    state,
                },
            );
        }
    }

    /// One gossip interval: every running node ticks, then the exchanges run.
    fn step(&mut self) {
        self.now += INTERVAL;
        let running: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.running)
            .map(|(id, _)| *id)
            .collect();
        for n in running {
            self.on(n, Event::Tick);
        }
        self.deliver();
    }

    fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        while self.now < until {
            self.step();
        }
    }

    /// Steps until `done` holds; false if it did not within `ms`.
    fn run_until(&mut self, ms: u64, done: impl Fn(&Sim) -> bool) -> bool {
        let until = self.now + ms;
        while !done(self) {
            if self.now >= until {
                return false;
            }
            self.step();
        }
        true
    }
}

fn settled_on(sim: &Sim, n: u64, members: &[u64]) -> bool {
    matches!(sim.node(n).rings().as_slice(), [ring] if ids(ring) == members)
}

#[test]
fn fresh_nodes_listing_each_other_found_one_cluster_and_catch_up() {
    let sim = Sim::cluster(&[1, 2, 3], 3 * INTERVAL);
    for n in [1, 2, 3] {
        let node = sim.node(n);
        assert!(settled_on(&sim, n, &[1, 2, 3]), "node {n}: {:?}", node.rings());
        assert!(node.current() && node.majority(), "node {n}");
        assert_eq!(node.saved.incarnation, 1);
        assert_eq!(node.saved.rings, node.rings(), "published rings are persisted");
        let mut peers: Vec<u64> = node
            .effects()
            .filter_map(|e| match e {
                Effect::EnsurePeer { id, .. } => Some(id.0),
                _ => None,
            })
            .collect();
        peers.sort_unstable();
        let others: Vec<u64> = [1, 2, 3].into_iter().filter(|o| *o != n).collect();
        assert_eq!(peers, others, "node {n}: one peer per other node, asked for once");
        let status = node.status();
        assert!(status.majority);
        assert!(status.members.iter().all(|m| m.status == "up"), "{status:?}");
    }
}

#[test]
fn a_node_without_seeds_founds_a_single_node_cluster() {
    let mut sim = Sim::new();
    sim.start(7, &[], Persisted::default());
    let node = sim.node(7);
    assert!(settled_on(&sim, 7, &[7]));
    assert!(node.current() && node.majority());
    assert_eq!(
        node.count(|e| matches!(e, Effect::GossipWith(_))),
        0,
        "nobody to gossip with"
    );
    assert!(matches!(node.log.first(), Some((_, Effect::Persist(p))) if p.incarnation == 1));
}

#[test]
fn a_node_that_stalled_removes_nobody_for_its_own_silence() {
    let mut sim = Sim::cluster(&[1, 2, 3], 5 * INTERVAL);
    assert!(sim.node(1).current());
    // The host is suspended for three times `down_after`: no node ticks meanwhile.
    sim.now += 3 * DOWN_AFTER;
    let effects = sim.on(1, Event::Tick);
    assert!(
        effects.contains(&Effect::SetMajority(false)),
        "no fresh news yet: fenced"
    );
    assert!(effects.contains(&Effect::NotifySync(SyncNews::CaughtUp {
        current: false,
        heard: true
    })));
    let status = sim.node(1).status();
    for n in [2, 3] {
        let shown = status.members.iter().find(|m| m.id == NodeId(n)).expect("listed");
        assert_eq!(
            shown.status, "suspect",
            "node {n} is not down for a silence node 1 caused"
        );
    }
    assert!(
        effects.contains(&Effect::GossipWith(NodeId(2))) && effects.contains(&Effect::GossipWith(NodeId(3))),
        "not current: it asks every member"
    );
    // The others wake up too; node 1 hears node 2 before node 3.
    sim.deliver();
    sim.run_for(10 * INTERVAL);
    for n in [1, 2, 3] {
        let node = sim.node(n);
        assert!(
            node.published().iter().flatten().all(|r| ids(r) == [1, 2, 3]),
            "node {n} published {:?}",
            node.published()
        );
        assert!(node.current() && node.majority(), "node {n} caught up again");
    }
}

#[test]
fn a_forgotten_departed_node_gossiped_again_is_not_re_added() {
    let mut sim = Sim::cluster(&[1, 2, 3], 3 * INTERVAL);
    sim.stop(3);
    assert!(
        sim.run_until(3 * DOWN_AFTER, |s| settled_on(s, 1, &[1, 2])
            && settled_on(s, 2, &[1, 2])),
        "node 3 removed"
    );
    // What node 2 gossips while it still remembers node 3.
    let remembered = sim.node(2).engine.gossip();
    assert!(remembered.nodes.iter().any(|n| n.id == NodeId(3)));
    let forgot = |s: &Sim| {
        [1, 2]
            .iter()
            .all(|n| s.node(*n).count(|e| *e == Effect::DropPeer(NodeId(3))) == 1)
    };
    assert!(sim.run_until(2 * FORGET_AFTER, forgot), "nodes 1 and 2 forget node 3");
    let marks: BTreeMap<u64, usize> = [1, 2].map(|n| (n, sim.node(n).log.len())).into();

    // A peer gossips node 3's last state again (it forgot it later, or not at all).
    for n in [1, 2] {
        sim.on(n, Event::Received(remembered.clone()));
    }
    sim.run_for(FORGET_AFTER / 2);
    for n in [1, 2] {
        let node = sim.node(n);
        let about_3 = node.log[marks[&n]..].iter().filter(|(_, e)| match e {
            Effect::EnsurePeer { id, .. } | Effect::DropPeer(id) => *id == NodeId(3),
            Effect::PublishRings(rings) => rings.iter().any(|r| r.contains(NodeId(3))),
            _ => false,
        });
        assert_eq!(
            about_3.count(),
            0,
            "node {n}: the ghost is neither re-added nor dropped again"
        );
        assert!(node.status().members.iter().all(|m| m.id != NodeId(3)), "node {n}");
        assert!(settled_on(&sim, n, &[1, 2]));
    }
}

#[test]
fn a_restarted_node_is_not_current_and_does_not_propose_until_it_heard_a_majority() {
    let mut sim = Sim::cluster(&[1, 2, 3], 3 * INTERVAL);
    sim.stop(3);
    let saved = sim.node(1).saved.clone();
    assert_eq!(saved.incarnation, 1);
    // Node 1, the proposer, restarts; it cannot reach node 2, though node 2 reaches it.
    sim.cut.insert((1, 2));
    sim.restart(1, saved);
    assert!(matches!(sim.node(1).log.first(), Some((_, Effect::Persist(p))) if p.incarnation == 2));
    assert_eq!(
        sim.node(1).sync_news().first(),
        Some(&SyncNews::CaughtUp {
            current: false,
            heard: false
        })
    );
    sim.deliver();
    sim.run_for(3 * DOWN_AFTER);
    let node = sim.node(1);
    assert!(node.majority(), "node 2's news shows it a majority");
    assert!(!node.current(), "but its own exchanges never completed");
    assert!(
        node.published().iter().flatten().all(|r| ids(r) == [1, 2, 3]),
        "node 3 is down, yet nobody proposed: {:?}",
        node.published()
    );
    assert!(sim.node(2).published().iter().flatten().all(|r| ids(r) == [1, 2, 3]));
    assert!(node.sync_news().contains(&SyncNews::CaughtUp {
        current: false,
        heard: true
    }));

    sim.cut.clear();
    sim.step();
    assert!(sim.node(1).current());
    assert!(
        sim.run_until(5 * INTERVAL, |s| settled_on(s, 1, &[1, 2]) && settled_on(s, 2, &[1, 2])),
        "once current, node 1 removes node 3"
    );
}

#[test]
fn the_barrier_is_reported_once_per_ring() {
    let mut sim = Sim::cluster(&[1, 2, 3], 3 * INTERVAL);
    sim.start(4, &[1], Persisted::default());
    let joined = |s: &Sim| (1..=4).all(|n| settled_on(s, n, &[1, 2, 3, 4]));
    assert!(sim.run_until(10 * INTERVAL, joined));
    sim.start(5, &[2], Persisted::default());
    let joined = |s: &Sim| (1..=5).all(|n| settled_on(s, n, &[1, 2, 3, 4, 5]));
    assert!(sim.run_until(10 * INTERVAL, joined));
    sim.run_for(20 * INTERVAL);
    for n in 1..=5 {
        let barriers: Vec<u64> = sim
            .node(n)
            .sync_news()
            .into_iter()
            .filter_map(|news| match news {
                SyncNews::BarrierReached(ring) => Some(ring.version),
                _ => None,
            })
            .collect();
        // A joining node hears of the cluster with the ring that adds it (4), or with the
        // settled ring of the previous join and then the one that adds it (5).
        let expected: Vec<u64> = if n <= 3 { vec![1, 2, 3] } else { vec![2, 3] };
        assert_eq!(barriers, expected, "node {n}");
    }
}

#[test]
fn leaving_completes_only_when_no_active_ring_contains_the_node() {
    let mut sim = Sim::cluster(&[1, 2, 3, 4], 3 * INTERVAL);
    sim.auto_sync = false;
    sim.on(4, Event::Leave);
    let proposed = |s: &Sim| s.node(4).rings().len() == 2;
    assert!(sim.run_until(5 * INTERVAL, proposed), "the proposer removes the leaver");
    let rings = sim.node(4).rings();
    assert_eq!(ids(&rings[1]), [1, 2, 3]);
    sim.run_for(DOWN_AFTER);
    assert_eq!(
        sim.node(4).count(|e| *e == Effect::Left),
        0,
        "the settled ring still holds node 4: its data is not handed off"
    );
    assert_eq!(
        sim.node(4)
            .status()
            .members
            .iter()
            .find(|m| m.id == NodeId(4))
            .map(|m| m.status),
        Some("leaving")
    );
    for n in [1, 2, 3] {
        sim.on(n, Event::Synced(rings[1].id));
    }
    assert!(sim.run_until(5 * INTERVAL, |s| settled_on(s, 4, &[1, 2, 3])));
    sim.run_for(5 * INTERVAL);
    assert_eq!(sim.node(4).count(|e| *e == Effect::Left), 1, "left, reported once");
    for n in [1, 2, 3] {
        assert_eq!(sim.node(n).count(|e| *e == Effect::Left), 0);
    }
}

#[test]
fn a_rolled_back_or_replaced_data_dir_reports_a_data_conflict_once() {
    let mut sim = Sim::cluster(&[1, 2, 3, 4], 10 * INTERVAL);
    // Node 3 restarts with another (empty) data dir under its name; nodes 1 and 2 both still
    // gossip the state of its previous one.
    sim.replace_data_dir(3, 999);
    // Node 4 restarts from a backup taken before its first run.
    sim.restart(4, Persisted::default());
    sim.deliver();
    sim.run_for(20 * INTERVAL);
    // Node 2 restarts from what it saved: its earlier run is older news, no conflict.
    let saved = sim.node(2).saved.clone();
    sim.restart(2, saved);
    sim.deliver();
    sim.run_for(20 * INTERVAL);
    let conflicts = |n| {
        sim.node(n)
            .sync_news()
            .iter()
            .filter(|news| **news == SyncNews::DataConflict)
            .count()
    };
    assert_eq!(conflicts(1), 0);
    assert_eq!(conflicts(2), 0);
    assert_eq!(conflicts(3), 1, "another data dir is noticed, once");
    assert_eq!(conflicts(4), 1, "a run the backup does not remember is noticed, once");
    for n in [3, 4] {
        let incarnation = sim.node(n).engine.view().my_state().incarnation;
        assert_eq!(incarnation, 2, "node {n} continues above the run it forgot");
    }
}

#[test]
fn a_coordinator_waiting_for_a_newer_ring_is_answered_once_it_is_known() {
    let mut sim = Sim::cluster(&[1, 2, 3], 3 * INTERVAL);
    let v1 = sim.node(2).rings()[0].id;
    assert_eq!(sim.on(2, Event::LearnRing(v1)), vec![Effect::AnswerLearners(v1)]);
    let v2 = RingId {
        version: 2,
        proposer: NodeId(1),
    };
    let asked = sim.on(2, Event::LearnRing(v2));
    assert_eq!(
        asked,
        vec![Effect::GossipWith(NodeId(1)), Effect::GossipWith(NodeId(3))],
        "it asks every node not down"
    );
    sim.start(4, &[1], Persisted::default());
    assert!(sim.run_until(10 * INTERVAL, |s| s.node(2).rings().last().is_some_and(|r| r.id == v2)));
    let node = sim.node(2);
    let published = node
        .log
        .iter()
        .position(|(_, e)| matches!(e, Effect::PublishRings(r) if r.last().is_some_and(|r| r.id == v2)))
        .expect("published");
    assert_eq!(
        node.log[published + 2].1,
        Effect::AnswerLearners(v2),
        "answered after publishing"
    );
}

#[test]
fn a_flush_mark_learned_by_gossip_is_raised() {
    let mut sim = Sim::cluster(&[1, 2], 2 * INTERVAL);
    let mark = FlushMark {
        tag: Tag {
            counter: 9,
            writer: WriterId(2),
        },
        at: 1,
    };
    let state = GossipState {
        flush: Some(mark),
        ..sim.node(2).engine.gossip()
    };
    let effects = sim.on(1, Event::Received(state));
    assert_eq!(effects.first(), Some(&Effect::RaiseFlushMark(mark)));
}
