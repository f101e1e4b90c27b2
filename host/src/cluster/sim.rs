//! Deterministic simulation of the cluster protocol (issue 14, item 7).
//!
//! An in-memory KV bucket with revisions and compare-and-set, nodes whose
//! clocks run at slightly different rates, KV answers and watch entries
//! delivered late, out of order or not at all (a periodic re-read repairs
//! the watch, as the driver does after a reconnect), and nemeses: joins,
//! clean leaves, crashes, restarts under the same id, pauses longer than a
//! lease, and a node cut off from the KV. After every step the checker
//! asserts:
//!
//! - (a) no two nodes serve one shard at the same real instant, where a node
//!   serves a shard if it believes so and its lease holds **on its own
//!   clock** at that instant (a paused node keeps its belief; the driver
//!   checks the lease before answering anything, see [`Node::is_serving`]);
//! - (b) epochs only grow, at every node and in the bucket;
//! - (c) once the nemeses stop, every shard ends up served by exactly one
//!   live node, its owner in the map, and stays so.
//!
//! Every schedule derives from one seed. A failure prints it; replay one
//! with a trace of every step:
//!
//! ```text
//! AETHER_SIM_SEED=1234 cargo test -p aether-host --lib cluster::sim -- --nocapture
//! ```
//!
//! `AETHER_SIM_SCHEDULES=100000` runs more schedules than the default.

use super::names::Key;
use super::node::{Action, Input, KvOp, KvOutcome, Node, RequestId};
use super::record::NodeId;
use super::shard::ShardId;
use super::{ClusterConfig, ShardMap};
use crate::wasm::sandbox::SplitMix64;
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

/// Schedules run by default (`AETHER_SIM_SCHEDULES` to change).
const DEFAULT_SCHEDULES: u64 = 10_000;

/// How long after the last nemesis (c) must hold, and how long it must then
/// stay so (a schedule ends there).
const QUIET_MS: u64 = 16_000;
const SETTLED_MS: u64 = 1_000;

/// The sandbox's splitmix64: small, fast and good enough to drive schedules.
#[derive(Debug)]
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next()
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick(&mut self, len: usize) -> usize {
        (self.next() % len as u64) as usize
    }
}

/// The bucket: the newest entry of every key, and the revision counter.
#[derive(Debug, Default)]
struct Kv {
    entries: BTreeMap<Key, (Option<Bytes>, u64)>,
    revision: u64,
    map_epoch: u64,
    /// The newest map, decoded once.
    map: Option<ShardMap>,
}

impl Kv {
    fn apply(&mut self, op: &KvOp) -> Result<Option<u64>, String> {
        if !op.takes_on(self.entries.get(op.key())) {
            return Ok(None);
        }
        if let (Key::Map, Some(value)) = (op.key(), op.value()) {
            let map = ShardMap::decode(value).map_err(|e| format!("the leader wrote a bad map: {e}"))?;
            if map.epoch() <= self.map_epoch {
                return Err(format!("(b) the bucket's map epoch went from {} to {}", self.map_epoch, map.epoch()));
            }
            self.map_epoch = map.epoch();
            self.map = Some(map);
        }
        self.revision += 1;
        self.entries.insert(op.key().clone(), (op.value().cloned(), self.revision));
        Ok(Some(self.revision))
    }

    fn map(&self) -> Option<&ShardMap> {
        self.map.as_ref()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Paused { until: u64 },
    Crashed,
    Left,
}

#[derive(Debug)]
struct SimNode {
    node: Node,
    /// Clock rate offset in parts per million, and the clock's reading at
    /// real time 0.
    ppm: i64,
    offset: u64,
    state: State,
    kv_down_until: u64,
    timer_gen: u64,
    /// When the pending timer fires (real time), if one is pending.
    timer_at: u64,
    /// Inputs that arrived while paused, handled on resume.
    held: Vec<Input>,
    epoch_seen: u64,
}

impl SimNode {
    fn local(&self, real: u64) -> u64 {
        self.offset + (real as i128 * (1_000_000 + self.ppm as i128) / 1_000_000) as u64
    }

    fn real(&self, local: u64) -> u64 {
        let delta = local.saturating_sub(self.offset) as i128;
        let rate = 1_000_000 + self.ppm as i128;
        ((delta * 1_000_000 + rate - 1) / rate) as u64
    }

    fn is_live(&self) -> bool {
        matches!(self.state, State::Running | State::Paused { .. })
    }
}

#[derive(Debug)]
enum Event {
    Deliver {
        node: usize,
        input: Input,
    },
    Timer {
        node: usize,
        generation: u64,
    },
    /// A request reaches the bucket.
    Store {
        node: usize,
        request: RequestId,
        op: KvOp,
        lose_reply: bool,
    },
    Resync {
        node: usize,
    },
    Join {
        id: NodeId,
    },
    Leave {
        node: usize,
    },
    Crash {
        node: usize,
    },
    Pause {
        node: usize,
        millis: u64,
    },
    Resume {
        node: usize,
    },
    KvDown {
        node: usize,
        millis: u64,
    },
    /// A nemesis, drawn when it runs.
    Nemesis,
}

#[derive(Debug)]
struct Sim {
    rng: Rng,
    config: ClusterConfig,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Event>>,
    kv: Kv,
    nodes: Vec<SimNode>,
    next_id: u64,
    trace: bool,
    steps: u64,
}

impl Sim {
    fn new(seed: u64, trace: bool) -> Self {
        Self {
            rng: Rng(SplitMix64(seed)),
            config: ClusterConfig { shards: 16, ..ClusterConfig::default() },
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            kv: Kv::default(),
            nodes: Vec::new(),
            next_id: 0,
            trace,
            steps: 0,
        }
    }

    fn at(&mut self, time: u64, event: Event) {
        self.seq += 1;
        self.events.push(Some(event));
        self.queue.push(Reverse((time, self.seq, self.events.len() - 1)));
    }

    /// A network delay: mostly short, sometimes long enough to reorder.
    fn delay(&mut self) -> u64 {
        if self.rng.chance(1) { self.rng.range(50, 400) } else { self.rng.range(1, 25) }
    }

    fn log(&self, text: impl FnOnce() -> String) {
        if self.trace {
            println!("{:>7} {}", self.now, text());
        }
    }

    fn fresh_id(&mut self) -> NodeId {
        self.next_id += 1;
        NodeId::new(format!("n{}", self.next_id))
    }

    fn join(&mut self, id: NodeId) {
        // Clocks differ by at most max_drift in rate: ±2.4% each.
        let ppm = self.rng.range(0, 48_000) as i64 - 24_000;
        let offset = self.rng.range(0, 1_000_000_000);
        let nonce = self.rng.next();
        let mut sim = SimNode {
            node: Node::new(id.clone(), &self.config, nonce, 0).expect("valid config"),
            ppm,
            offset,
            state: State::Running,
            kv_down_until: 0,
            timer_gen: 0,
            timer_at: 0,
            held: Vec::new(),
            epoch_seen: 0,
        };
        sim.node = Node::new(id.clone(), &self.config, nonce, sim.local(self.now)).expect("valid config");
        self.nodes.push(sim);
        let index = self.nodes.len() - 1;
        self.log(|| format!("node {index} ({id}) starts, clock {ppm:+} ppm"));
        self.after_handle(index);
        // An initial read of the bucket, as the driver does on start.
        let t = self.now + self.rng.range(1, 30);
        self.at(t, Event::Resync { node: index });
    }

    fn input(&mut self, index: usize, input: Input) -> Result<(), String> {
        let node = &mut self.nodes[index];
        match node.state {
            State::Crashed | State::Left => return Ok(()),
            State::Paused { .. } => {
                node.held.push(input);
                return Ok(());
            }
            State::Running => {}
        }
        let local = node.local(self.now);
        if self.trace {
            self.log(|| format!("node {index} <- {input:?}"));
        }
        self.nodes[index].node.handle(local, input);
        let started = self.after_handle(index);
        self.check(index, &started)
    }

    /// Carries out the node's actions and sets its timer; returns the
    /// shards it started serving.
    fn after_handle(&mut self, index: usize) -> Vec<ShardId> {
        let mut started = Vec::new();
        while let Some(action) = self.nodes[index].node.poll_action() {
            if self.trace {
                self.log(|| format!("node {index} -> {action:?}"));
            }
            match action {
                Action::Kv { request, op } => {
                    let down = self.now < self.nodes[index].kv_down_until;
                    if down || self.rng.chance(2) {
                        // Never reached the bucket.
                        let t = self.now + self.rng.range(20, 500);
                        let input = Input::KvResult { request, outcome: KvOutcome::Unavailable };
                        self.at(t, Event::Deliver { node: index, input });
                    } else {
                        let lose_reply = self.rng.chance(2);
                        let t = self.now + self.delay();
                        self.at(t, Event::Store { node: index, request, op, lose_reply });
                    }
                }
                Action::StopServing { shard } => {
                    let t = self.now + self.rng.range(0, 300);
                    self.at(t, Event::Deliver { node: index, input: Input::ShardDrained(shard) });
                }
                Action::Left => self.nodes[index].state = State::Left,
                Action::Serve { shard, .. } => started.push(shard),
                Action::Event(_) => {}
            }
        }
        let node = &mut self.nodes[index];
        if let Some(timer) = node.node.next_timer() {
            let t = node.real(timer).max(self.now + 1);
            // A pending timer that fires no later will do: the node asks
            // again then. (Fewer events keeps 10,000 schedules fast.)
            if node.timer_at <= self.now || node.timer_at > t {
                node.timer_gen += 1;
                node.timer_at = t;
                let generation = node.timer_gen;
                self.at(t, Event::Timer { node: index, generation });
            }
        }
        started
    }

    fn store(&mut self, index: usize, request: RequestId, op: KvOp, lose_reply: bool) -> Result<(), String> {
        let revision = self.kv.apply(&op)?;
        let outcome = match revision {
            Some(revision) => {
                // Deletes report no revision, as with NATS.
                let reported = if matches!(op, KvOp::Delete { .. }) { None } else { Some(revision) };
                self.watch(op.key().clone(), op.value().cloned(), revision);
                KvOutcome::Ok { revision: reported }
            }
            None => KvOutcome::Conflict,
        };
        let outcome = if lose_reply { KvOutcome::Unavailable } else { outcome };
        let t = self.now + self.delay();
        self.at(t, Event::Deliver { node: index, input: Input::KvResult { request, outcome } });
        Ok(())
    }

    /// Fans a new entry out to every watcher, late, reordered or lost.
    fn watch(&mut self, key: Key, value: Option<Bytes>, revision: u64) {
        for index in 0..self.nodes.len() {
            let node = &self.nodes[index];
            if !node.is_live() || self.now < node.kv_down_until || self.rng.chance(2) {
                continue;
            }
            let t = self.now + self.delay();
            let input = Input::KvChanged { key: key.clone(), value: value.clone(), revision };
            self.at(t, Event::Deliver { node: index, input });
        }
    }

    fn resync(&mut self, index: usize) {
        if !self.nodes[index].is_live() {
            return;
        }
        if self.now >= self.nodes[index].kv_down_until {
            let entries: Vec<_> = self.kv.entries.iter().map(|(k, (v, r))| (k.clone(), v.clone(), *r)).collect();
            for (key, value, revision) in entries {
                let t = self.now + self.rng.range(1, 20);
                self.at(t, Event::Deliver { node: index, input: Input::KvChanged { key, value, revision } });
            }
        }
        let t = self.now + self.rng.range(1_000, 2_000);
        self.at(t, Event::Resync { node: index });
    }

    fn step(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Deliver { node, input } => self.input(node, input)?,
            Event::Timer { node, generation } => {
                let n = &mut self.nodes[node];
                if n.timer_gen == generation {
                    n.timer_at = 0;
                }
                if n.timer_gen == generation || matches!(n.state, State::Paused { .. }) {
                    self.input(node, Input::Tick)?;
                }
            }
            Event::Store { node, request, op, lose_reply } => self.store(node, request, op, lose_reply)?,
            Event::Resync { node } => self.resync(node),
            Event::Join { id } => self.join(id),
            Event::Leave { node } => self.input(node, Input::Leave)?,
            Event::Crash { node } => {
                self.log(|| format!("node {node} crashes"));
                self.nodes[node].state = State::Crashed;
            }
            Event::Pause { node, millis } => {
                if self.nodes[node].state == State::Running {
                    self.log(|| format!("node {node} pauses for {millis} ms"));
                    self.nodes[node].state = State::Paused { until: self.now + millis };
                    self.at(self.now + millis, Event::Resume { node });
                }
            }
            Event::Resume { node } => {
                if let State::Paused { .. } = self.nodes[node].state {
                    self.log(|| format!("node {node} resumes"));
                    self.nodes[node].state = State::Running;
                    self.input(node, Input::Tick)?;
                    for input in std::mem::take(&mut self.nodes[node].held) {
                        self.input(node, input)?;
                    }
                }
            }
            Event::Nemesis => {}
            Event::KvDown { node, millis } => {
                self.log(|| format!("node {node} loses the KV for {millis} ms"));
                self.nodes[node].kv_down_until = self.now + millis;
                // The driver re-reads everything once it reconnects.
                self.at(self.now + millis, Event::Resync { node });
            }
        }
        Ok(())
    }

    /// (a) and (b) for the node that just handled an input, given the
    /// shards it started serving in that step. Checking only those is
    /// enough: a node's effective serving set grows only by `Serve` (its
    /// lease cannot come back without a step, and every step starts by
    /// fencing if it ran out), and between steps it only shrinks, so a
    /// double owner first appears right after the second one's `Serve`.
    fn check(&mut self, index: usize, started: &[ShardId]) -> Result<(), String> {
        let sim = &mut self.nodes[index];
        let epoch = sim.node.epoch();
        if epoch < sim.epoch_seen {
            return Err(format!("(b) node {index}'s epoch went from {} to {epoch}", sim.epoch_seen));
        }
        sim.epoch_seen = epoch;
        for (other, them) in self.nodes.iter().enumerate() {
            if other == index || !them.is_live() {
                continue;
            }
            let local = them.local(self.now);
            if let Some(shard) = started.iter().find(|s| them.node.is_serving(local, **s)) {
                return Err(format!("(a) nodes {other} and {index} both serve shard {shard}"));
            }
        }
        Ok(())
    }

    /// (c): every shard served by exactly one live node, its owner.
    fn settled(&self) -> Result<(), String> {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].state == State::Running).collect();
        if live.is_empty() {
            return Ok(());
        }
        let map = self.kv.map().ok_or("no map in the bucket")?;
        for s in 0..map.shard_count() {
            let shard = ShardId(s);
            let owner = map.owner(shard).ok_or(format!("shard {s} has no owner"))?;
            if !map.is_settled(shard) {
                return Err(format!("shard {s} is still moving to {}", owner.id));
            }
            let servers: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| self.nodes[i].node.is_serving(self.nodes[i].local(self.now), shard))
                .collect();
            let [server] = servers[..] else {
                return Err(format!("shard {s} is served by nodes {servers:?}, not exactly one"));
            };
            let node = &self.nodes[server].node;
            if node.id() != &owner.id || node.incarnation() != Some(owner.incarnation) {
                return Err(format!("shard {s} is served by node {server}, not by its owner {}", owner.id));
            }
        }
        Ok(())
    }

    fn live_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].state == State::Running).collect()
    }

    /// Plans the nemeses of one schedule, then runs it to the end.
    fn run(&mut self) -> Result<Summary, String> {
        self.config.shards = [8, 16, 16, 32, 64][self.rng.pick(5)];
        for _ in 0..self.rng.range(1, 4) {
            let id = self.fresh_id();
            let t = self.rng.range(0, 500);
            self.at(t, Event::Join { id });
        }
        // Nemeses are drawn when their time comes, against the nodes of that
        // moment.
        let chaos_ms = self.rng.range(2_000, 9_000);
        let mut t = self.rng.range(300, 2_000);
        for _ in 0..self.rng.range(0, 6) {
            if t > chaos_ms {
                break;
            }
            self.at(t, Event::Nemesis);
            t += self.rng.range(100, 2_500);
        }
        let mut summary = Summary::default();
        let end = chaos_ms + QUIET_MS + SETTLED_MS;
        let mut settled_at: Option<u64> = None;
        let mut next_settle_check = chaos_ms;
        while let Some(Reverse((time, _, slot))) = self.queue.pop() {
            if time > end {
                break;
            }
            self.now = time;
            let event = self.events[slot].take().expect("each event runs once");
            if let Event::Nemesis = event {
                self.nemesis(&mut summary);
            } else {
                self.step(event)?;
            }
            self.steps += 1;
            // (c) is checked every 50 ms of simulated time, (a) and (b) at every step.
            if time < next_settle_check {
                continue;
            }
            next_settle_check = time + 50;
            if self.nodes.iter().all(|n| !n.is_live()) {
                // Everyone is gone: one node joins so there is something to check.
                let id = self.fresh_id();
                self.join(id);
            }
            match self.settled() {
                Ok(()) => {
                    // Settled, and stayed so for a while: done.
                    if time - *settled_at.get_or_insert(time) >= SETTLED_MS {
                        break;
                    }
                }
                Err(e) if time >= chaos_ms + QUIET_MS => {
                    return Err(format!("(c) {} ms after the last nemesis: {e}", time - chaos_ms));
                }
                Err(_) => settled_at = None,
            }
        }
        summary.steps = self.steps;
        summary.settle_ms = settled_at.map(|t| t.saturating_sub(chaos_ms));
        Ok(summary)
    }

    fn nemesis(&mut self, summary: &mut Summary) {
        let live = self.live_nodes();
        let now = self.now;
        let pick = |sim: &mut Sim| live[sim.rng.pick(live.len())];
        match self.rng.range(0, 6) {
            0 | 1 if live.len() < 5 => {
                let id = self.fresh_id();
                self.at(now, Event::Join { id });
                summary.joins += 1;
            }
            _ if live.is_empty() => {}
            2 => {
                let node = pick(self);
                self.at(now, Event::Leave { node });
                summary.leaves += 1;
            }
            3 => {
                let node = pick(self);
                self.at(now, Event::Crash { node });
                summary.crashes += 1;
                if self.rng.chance(50) {
                    // Restarts under the same id.
                    let id = self.nodes[node].node.id().clone();
                    let t = now + self.rng.range(10, 3_000);
                    self.at(t, Event::Join { id });
                }
            }
            4 => {
                let node = pick(self);
                let millis = self.rng.range(300, 5_000);
                self.at(now, Event::Pause { node, millis });
                summary.pauses += 1;
            }
            _ => {
                let node = pick(self);
                let millis = self.rng.range(300, 4_000);
                self.at(now, Event::KvDown { node, millis });
                summary.kv_outages += 1;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Summary {
    steps: u64,
    joins: u64,
    leaves: u64,
    crashes: u64,
    pauses: u64,
    kv_outages: u64,
    /// From the last nemesis until every shard was served by its owner.
    settle_ms: Option<u64>,
}

fn run_seed(seed: u64, trace: bool) -> Result<Summary, String> {
    Sim::new(seed, trace).run()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number, not {v:?}")))
}

#[test]
fn seeded_schedules_keep_every_invariant() {
    if let Some(seed) = env_u64("AETHER_SIM_SEED") {
        match run_seed(seed, true) {
            Ok(summary) => println!("seed {seed}: ok, {summary:?}"),
            Err(e) => panic!("seed {seed}: {e}"),
        }
        return;
    }
    let schedules = env_u64("AETHER_SIM_SCHEDULES").unwrap_or(DEFAULT_SCHEDULES);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let start = Instant::now();
    // Per thread: steps, settle times, and the first failing seed.
    type Outcome = (u64, Vec<u64>, Option<(u64, String)>);
    let results: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let (mut steps, mut settle) = (0, Vec::new());
                    for seed in (t..schedules).step_by(threads as usize) {
                        match run_seed(seed, false) {
                            Ok(summary) => {
                                steps += summary.steps;
                                settle.extend(summary.settle_ms);
                            }
                            Err(e) => return (steps, settle, Some((seed, e))),
                        }
                    }
                    (steps, settle, None)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a simulation thread panicked")).collect()
    });
    let elapsed = start.elapsed();
    let steps: u64 = results.iter().map(|r| r.0).sum();
    let mut settle: Vec<u64> = results.iter().flat_map(|r| r.1.iter().copied()).collect();
    settle.sort_unstable();
    let quantile = |q: f64| settle.get(((settle.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0);
    println!(
        "sim: {schedules} schedules, {steps} steps in {elapsed:.1?}; settled after the last nemesis in \
         p50 {} ms, p99 {} ms, max {} ms",
        quantile(0.5),
        quantile(0.99),
        quantile(1.0)
    );
    if let Some((seed, e)) = results.into_iter().filter_map(|r| r.2).min_by_key(|(seed, _)| *seed) {
        panic!(
            "seed {seed}: {e}\nreplay: AETHER_SIM_SEED={seed} cargo test -p aether-host --lib cluster::sim -- --nocapture"
        );
    }
    assert!(elapsed < Duration::from_secs(600));
}
