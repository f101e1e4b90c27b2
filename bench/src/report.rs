//! The figures of a run: a table for people and `summary.json` for tools.
//!
//! Each figure is shown with its target and with the baseline measured in
//! the same run, as a ratio (figure / baseline), so a noisy machine moves
//! both sides together.

use crate::activation::{Activation, FromStore};
use crate::cluster::{ClusterFigures, quantile_s};
use crate::commands::Commands;
use crate::flows::FlowFigures;
use crate::jetstream::JetStream;
use crate::replay::Replay;
use crate::resident::Resident;
use crate::verify::Verify;
use serde_json::{Map, Value};
use std::fmt::Write;

/// What a figure must reach.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
    /// At least this fraction of the baseline.
    RatioAtLeast(f64),
    /// At least a value and a fraction of the baseline.
    Both(f64, f64),
    None,
}

#[derive(Debug, Clone)]
pub struct Figure {
    pub key: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub target: Target,
    /// What the figure is compared with, and its value in this run.
    pub baseline: Option<(&'static str, f64)>,
}

impl Figure {
    pub fn ratio(&self) -> Option<f64> {
        self.baseline.filter(|(_, b)| *b > 0.0).map(|(_, b)| self.value / b)
    }

    pub fn holds(&self) -> Option<bool> {
        let ratio = self.ratio();
        match self.target {
            Target::AtMost(t) => Some(self.value <= t),
            Target::AtLeast(t) => Some(self.value >= t),
            Target::RatioAtLeast(r) => ratio.map(|x| x >= r),
            Target::Both(t, r) => ratio.map(|x| x >= r && self.value >= t),
            Target::None => None,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::AtMost(t) => format!("≤ {}", human(t)),
            Target::AtLeast(t) => format!("≥ {}", human(t)),
            Target::RatioAtLeast(r) => format!("≥ {r}× baseline"),
            Target::Both(t, r) => format!("≥ {} and ≥ {r}×", human(t)),
            Target::None => "-".into(),
        }
    }
}

/// Every figure of a run, plus extra numbers for `summary.json`.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub figures: Vec<Figure>,
    pub extra: Vec<(&'static str, f64)>,
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl Report {
    fn figure(
        &mut self,
        key: &'static str,
        value: f64,
        unit: &'static str,
        target: Target,
        baseline: Option<(&'static str, f64)>,
    ) {
        self.figures.push(Figure { key, value, unit, target, baseline });
    }

    pub fn activation(&mut self, a: &Activation) {
        let native = Some(("native restore p50", a.native_p50_us));
        self.figure("activation_p50_us", a.p50_us, "µs", Target::AtMost(15.0), native);
        let native = Some(("native restore p99", a.native_p99_us));
        self.figure("activation_p99_us", a.p99_us, "µs", Target::AtMost(50.0), native);
        self.extra.push(("activation_native_p50_us", a.native_p50_us));
        self.extra.push(("activation_native_p99_us", a.native_p99_us));
    }

    /// Activation from a store (`store`: `embedded`, `jetstream`), beside
    /// the in-process activation of the same run.
    pub fn activation_from(&mut self, store: &str, a: &FromStore, in_process_p50_us: f64) {
        let (p50, p99): (&'static str, &'static str) = match store {
            "embedded" => ("activation_embedded_p50_us", "activation_embedded_p99_us"),
            _ => ("activation_jetstream_p50_us", "activation_jetstream_p99_us"),
        };
        let base = (in_process_p50_us > 0.0).then_some(("in-process activation p50", in_process_p50_us));
        self.figure(p50, a.p50_us, "µs", Target::None, base);
        self.figure(p99, a.p99_us, "µs", Target::None, base);
    }

    pub fn replay(&mut self, r: &Replay) {
        let native = Some(("native replay", r.native_events_per_s));
        self.figure("replay_events_per_s", r.events_per_s, "/s", Target::Both(3_000_000.0, 0.25), native);
        self.extra.push(("replay_native_events_per_s", r.native_events_per_s));
    }

    /// `verify`: events replayed and commands decided again per second,
    /// beside a plain replay of the same history in the same run.
    pub fn verify(&mut self, v: &Verify) {
        let replay = Some(("replay of the same history", v.replay_events_per_s));
        self.figure("verify_events_per_s", v.events_per_s, "/s", Target::None, replay);
        self.figure("verify_commands_per_s", v.commands_per_s, "/s", Target::None, None);
        self.extra.push(("verify_replay_events_per_s", v.replay_events_per_s));
        self.extra.push(("verify_events", v.events as f64));
    }

    /// Policies and read models: each hosted figure beside the same code
    /// called natively in the same run (see [`crate::flows`]).
    pub fn flows(&mut self, f: &FlowFigures) {
        let (p, r) = (&f.policy, &f.read_model);
        let base = Some(("runner with the saga native", p.events.native));
        self.figure("policy_events_per_s", p.events.hosted, "/s", Target::None, base);
        let base = Some(("runner with the saga native", p.commands.native));
        self.figure("policy_commands_per_s", p.commands.hosted, "/s", Target::None, base);
        let base = Some(("native react", p.react.native));
        self.figure("policy_react_events_per_s", p.react.hosted, "/s", Target::None, base);
        let base = Some(("runner with the read model native", r.events.native));
        self.figure("read_model_events_per_s", r.events.hosted, "/s", Target::None, base);
        let base = Some(("native keys + fold", r.fold.native));
        self.figure("read_model_fold_events_per_s", r.fold.hosted, "/s", Target::None, base);
        self.extra.push(("policy_native_events_per_s", p.events.native));
        self.extra.push(("policy_native_commands_per_s", p.commands.native));
        self.extra.push(("policy_react_native_events_per_s", p.react.native));
        self.extra.push(("policy_native_execute_share", p.execute_share));
        self.extra.push(("policy_views_us_per_event", p.views_us_per_event));
        self.extra.push(("policy_events", p.events_total as f64));
        self.extra.push(("read_model_native_events_per_s", r.events.native));
        self.extra.push(("read_model_fold_native_events_per_s", r.fold.native));
        self.extra.push(("read_model_views_us_per_event", r.views_us_per_event));
        self.extra.push(("read_model_rows_per_batch", r.rows_per_batch));
        self.extra.push(("flow_handoff_us", r.handoff_us));
        self.extra.push(("read_model_fold_handed_off_events_per_s", r.fold_handed_off));
        self.extra.push(("component_clone_us", r.component_clone_us));
        self.extra.push(("read_model_events", r.events_total as f64));
    }

    pub fn memory(&mut self, wasm: &Commands, native: &Commands) {
        let base = Some(("native commands", native.steady.per_s));
        self.figure("commands_per_s_memory", wasm.steady.per_s, "/s", Target::AtLeast(200_000.0), base);
        let base = Some(("native p99", native.steady.p99_us));
        self.figure("command_p99_us_memory", wasm.steady.p99_us, "µs", Target::AtMost(1000.0), base);
        self.extra.push(("commands_native_per_s", native.steady.per_s));
        self.extra.push(("command_p50_us_memory", wasm.steady.p50_us));
        self.extra.push(("command_p99_us_native", native.steady.p99_us));
        self.extra.push(("open_per_s_memory", wasm.open.per_s));
        self.extra.push(("open_p99_us_memory", wasm.open.p99_us));
    }

    pub fn embedded(&mut self, wasm: &Commands, native: &Commands) {
        let base = Some(("native on embedded", native.steady.per_s));
        self.figure("commands_per_s_embedded", wasm.steady.per_s, "/s", Target::AtLeast(50_000.0), base);
        self.extra.push(("commands_native_per_s_embedded", native.steady.per_s));
        self.extra.push(("command_p50_us_embedded", wasm.steady.p50_us));
        self.extra.push(("command_p99_us_embedded", wasm.steady.p99_us));
    }

    /// The cluster phase: forwarding next to the owner, a join's settle time,
    /// and latency while a handoff runs next to the lone node's.
    pub fn cluster(&mut self, c: &ClusterFigures) {
        let direct = Some(("commands to the owner", c.direct.per_s));
        self.figure("commands_per_s_cluster_forwarded", c.forwarded.per_s, "/s", Target::None, direct);
        self.extra.push(("commands_per_s_cluster_direct", c.direct.per_s));
        self.extra.push(("command_p99_us_cluster_direct", c.direct.p99_us));
        self.extra.push(("command_p99_us_cluster_forwarded", c.forwarded.p99_us));
        self.figure("cluster_join_settle_s", c.settle_s, "s", Target::None, None);
        self.extra.push(("cluster_join_shards_moved", c.moved as f64));
        let alone = Some(("p99 of the lone node", c.alone.p99_us));
        self.figure("command_p99_us_during_handoff", c.during_join.p99_us, "µs", Target::None, alone);
        self.extra.push(("command_p50_us_during_handoff", c.during_join.p50_us));
        self.extra.push(("commands_during_handoff", c.during_join.commands as f64));
        let f = &c.failover;
        let all = f.all_s();
        if !all.is_empty() {
            self.figure("cluster_failover_p99_s", quantile_s(&all, 0.99), "s", Target::AtMost(3.0), None);
            self.extra.push(("cluster_failover_p50_s", quantile_s(&all, 0.5)));
            self.extra.push(("cluster_failover_kills", all.len() as f64));
            self.extra.push(("cluster_failover_owner_p99_s", quantile_s(&f.owner_s, 0.99)));
            self.extra.push(("cluster_failover_leader_p50_s", quantile_s(&f.leader_s, 0.5)));
            self.extra.push(("cluster_failover_leader_p99_s", quantile_s(&f.leader_s, 0.99)));
            self.extra.push(("cluster_leader_takeover_p99_s", quantile_s(&f.takeover_s, 0.99)));
        }
    }

    pub fn jetstream(&mut self, js: &JetStream) {
        let raw = Some(("raw publish", js.raw.per_s));
        let c = &js.commands.steady;
        self.figure("commands_per_s_jetstream", c.per_s, "/s", Target::RatioAtLeast(0.5), raw);
        self.extra.push(("command_p50_us_jetstream", c.p50_us));
        self.extra.push(("command_p99_us_jetstream", c.p99_us));
        // The same with ids the caller chose, which the store claims in the
        // command index before appending (two publishes instead of one): no
        // target of its own, compared with the generated ids of the same
        // run so the cost of that guard is in view.
        let ids = &js.caller_ids.steady;
        let minted = Some(("generated-id commands", c.per_s));
        self.figure("commands_per_s_jetstream_caller_ids", ids.per_s, "/s", Target::None, minted);
        self.extra.push(("command_p50_us_jetstream_caller_ids", ids.p50_us));
        self.extra.push(("command_p99_us_jetstream_caller_ids", ids.p99_us));
        let of_raw = if js.raw.per_s > 0.0 { ids.per_s / js.raw.per_s } else { 0.0 };
        self.extra.push(("jetstream_caller_ids_to_raw_publish", of_raw));
        self.extra.push(("jetstream_raw_publish_per_s", js.raw.per_s));
        self.extra.push(("jetstream_raw_publish_p50_us", js.raw.p50_us));
        self.extra.push(("jetstream_publish_with_headers_per_s", js.with_headers.per_s));
        self.extra.push(("jetstream_raw_publish_p99_us", js.raw.p99_us));
        self.extra.push(("jetstream_message_bytes", js.message_bytes as f64));
        // CPU per message of each load, this process's and the server's, and
        // the machine's idle share: what explains the ratios above.
        const KEYS: [[&str; 3]; 4] = [
            ["jetstream_commands_host_cpu_us", "jetstream_commands_server_cpu_us", "jetstream_commands_idle_share"],
            ["jetstream_raw_client_cpu_us", "jetstream_raw_server_cpu_us", "jetstream_raw_idle_share"],
            [
                "jetstream_caller_ids_host_cpu_us",
                "jetstream_caller_ids_server_cpu_us",
                "jetstream_caller_ids_idle_share",
            ],
            [
                "jetstream_with_headers_client_cpu_us",
                "jetstream_with_headers_server_cpu_us",
                "jetstream_with_headers_idle_share",
            ],
        ];
        for (cpu, [client, server, idle]) in js.cpu.iter().zip(KEYS) {
            self.extra.push((client, cpu.client_us()));
            self.extra.push((server, cpu.server_us()));
            self.extra.push((idle, cpu.idle()));
        }
    }

    pub fn resident(&mut self, r: &Resident) {
        self.figure("rss_bytes_per_resident_actor", r.rss_per_actor, "B", Target::AtMost(65536.0), None);
        let target = Target::AtLeast(100_000.0);
        self.figure("max_resident_actors", r.max_actors as f64, "", target, None);
        self.extra.push(("resident_sampled_actors", r.sampled as f64));
        self.extra.push(("mappings_per_resident_actor", r.maps_per_actor));
        self.extra.push(("max_resident_stop_reason", f64::from(r.reason.code())));
        self.extra.push(("vm_max_map_count", r.max_map_count as f64));
        self.extra.push(("resident_probe_seconds", r.seconds));
        self.notes.push(format!("max_resident_actors stopped: {:?} ({})", r.reason, r.detail));
    }

    /// The flat JSON object of `summary.json`.
    pub fn json(&self) -> Value {
        let mut map = Map::new();
        for f in &self.figures {
            map.insert(f.key.into(), number(f.value));
            if let Some(r) = f.ratio() {
                map.insert(format!("{}_ratio", f.key), number(r));
            }
        }
        for (k, v) in &self.extra {
            map.insert((*k).into(), number(*v));
        }
        map.insert("bench_seconds".into(), number(self.seconds));
        Value::Object(map)
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "figure".to_string(),
            "measured".into(),
            "target".into(),
            "baseline".into(),
            "ratio".into(),
            "".into(),
        ]];
        for f in &self.figures {
            rows.push([
                f.key.to_string(),
                format!("{} {}", human(f.value), f.unit).trim().to_string(),
                f.target_text(),
                f.baseline.map_or("-".into(), |(what, v)| format!("{what} {}", human(v))),
                f.ratio().map_or("-".into(), |r| format!("{r:.2}×")),
                match f.holds() {
                    Some(true) => "ok".into(),
                    Some(false) => "MISS".into(),
                    None => "".into(),
                },
            ]);
        }
        let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for (n, row) in rows.iter().enumerate() {
            for (i, cell) in row.iter().enumerate() {
                let _ = write!(out, "{cell}{}  ", " ".repeat(widths[i] - cell.chars().count()));
            }
            out = out.trim_end().to_string();
            out.push('\n');
            if n == 0 {
                out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 10));
                out.push('\n');
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = writeln!(out, "run took {:.0} s", self.seconds);
        out
    }
}

fn number(v: f64) -> Value {
    let rounded = if v.abs() >= 100.0 { v.round() } else { (v * 1000.0).round() / 1000.0 };
    serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number)
}

/// 1234567 → "1.23 M", 12.345 → "12.3".
fn human(v: f64) -> String {
    match v.abs() {
        x if x >= 1e6 => format!("{:.2} M", v / 1e6),
        x if x >= 1e4 => format!("{:.1} k", v / 1e3),
        x if x >= 100.0 => format!("{v:.0}"),
        x if x >= 1.0 => format!("{v:.1}"),
        _ => format!("{v:.3}"),
    }
}
