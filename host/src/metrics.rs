//! The runtime's counters and latency histograms, and their rendering in the
//! Prometheus text exposition format for `GET /metrics`.
//!
//! Plain atomics rather than a metrics registry: the hot path pays one
//! relaxed `fetch_add` per figure, nothing allocates, and the set of figures
//! is fixed by the runtime, so a registry would buy nothing.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: 25 µs to 10 s.
const BOUNDS: [f64; 18] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BOUNDS.iter().position(|&bound| seconds <= bound).unwrap_or(BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(elapsed.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match BOUNDS.get(i) {
                Some(bound) => _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}"),
                None => _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}"),
            }
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        // The count is the +Inf bucket, so the two always agree in one scrape.
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// What the runtime counts. Every field is monotonic except where noted.
#[derive(Debug, Default)]
pub struct Stats {
    /// Commands routed to an actor (after the aggregate and command were found).
    pub commands: AtomicU64,
    /// Commands the guest rejected (business rule).
    pub rejections: AtomicU64,
    /// Appends that met another writer's events (each retry counts).
    pub conflicts: AtomicU64,
    /// Guest faults and actors that could not be rebuilt.
    pub faults: AtomicU64,
    /// VMs built for an actor (first use, after passivation or a fault).
    pub activations: AtomicU64,
    /// Events applied while rebuilding or catching up actors.
    pub replayed: AtomicU64,
    /// Actors whose VM was dropped to save memory.
    pub passivations: AtomicU64,
    /// Requests turned away at a limit of the host (`503 overloaded`).
    pub overloads: AtomicU64,
    /// Components swapped in by a live upgrade (or rollback).
    pub upgrades: AtomicU64,
    /// Live actors whose VM ran an older component, rebuilt on the current one.
    pub moved_over: AtomicU64,
    /// From receiving a command to its outcome, including waiting for the actor.
    pub command_latency: Histogram,
    /// Building an actor's VM: instantiation, snapshot, replay.
    pub activation_latency: Histogram,
}

impl Stats {
    /// The figures in the Prometheus text format, with `live_actors` as a gauge.
    pub fn render_prometheus(&self, live_actors: usize, bus: &crate::bus::BusStats) -> String {
        let mut out = String::with_capacity(4096);
        let counters: [(&str, &str, &AtomicU64); 13] = [
            ("aether_commands_total", "Commands routed to an actor.", &self.commands),
            ("aether_rejections_total", "Commands rejected by the domain.", &self.rejections),
            ("aether_conflicts_total", "Appends that met a concurrent writer.", &self.conflicts),
            ("aether_faults_total", "Guest faults and failed rebuilds.", &self.faults),
            ("aether_activations_total", "Actor VMs built.", &self.activations),
            ("aether_replayed_events_total", "Events applied to rebuild or catch up actors.", &self.replayed),
            ("aether_passivations_total", "Actor VMs dropped when idle or over the cap.", &self.passivations),
            ("aether_overloaded_total", "Requests turned away at a limit of the host.", &self.overloads),
            ("aether_upgrades_total", "Components swapped in by a live upgrade or rollback.", &self.upgrades),
            ("aether_upgrade_moved_actors_total", "Live actors rebuilt on an upgraded component.", &self.moved_over),
            ("aether_bus_published_total", "Events published on the bus.", &bus.published),
            ("aether_bus_dropped_total", "Bus events the NATS publisher could not send.", &bus.dropped),
            ("aether_bus_lagged_total", "Bus events in-process subscribers missed by falling behind.", &bus.lagged),
        ];
        for (name, help, value) in counters {
            counter(&mut out, name, help, value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP aether_live_actors Actors with a VM in memory.\n# TYPE aether_live_actors gauge\naether_live_actors {live_actors}"
        );
        self.command_latency.render(
            &mut out,
            "aether_command_duration_seconds",
            "Time from receiving a command to its outcome.",
        );
        self.activation_latency.render(
            &mut out,
            "aether_activation_duration_seconds",
            "Time to build an actor's VM from its snapshot and events.",
        );
        out
    }
}

/// One counter in the text format.
pub(crate) fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

/// One gauge in the text format.
pub(crate) fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_agree_with_the_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.000025\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        let sum: f64 = out.lines().find_map(|l| l.strip_prefix("x_sum ")).unwrap().parse().unwrap();
        assert!((sum - 60.00071).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn stats_render_every_figure_once() {
        let stats = Stats::default();
        stats.commands.fetch_add(3, Ordering::Relaxed);
        let out = stats.render_prometheus(2, &crate::bus::BusStats::default());
        assert!(out.contains("\naether_commands_total 3\n"), "{out}");
        assert!(out.contains("\naether_live_actors 2\n"), "{out}");
        assert_eq!(out.matches("# TYPE").count(), 16, "{out}");
    }
}
