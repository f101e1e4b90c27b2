//! Small measuring tools: percentiles, medians, the process's memory.

use std::time::Duration;

/// The `q` quantile (0..=1) of samples, nearest rank. `0` for no samples.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of some figures (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A line of `/proc/self/status` (e.g. `VmRSS`), in bytes; 0 if unavailable.
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The resident set of this process, bytes.
pub fn rss_bytes() -> u64 {
    proc_status_bytes("VmRSS")
}

/// The resident set once mimalloc has handed back the memory it holds
/// freed. Loading the component frees megabytes that mimalloc returns to
/// the system only later: a baseline that still holds them either loses
/// them during the run, crediting the actors (once by 240 MB, which gave a
/// negative size per actor), or lends them to the actors, hiding what they
/// occupy. Read at both ends, the difference is what the actors hold.
#[allow(unsafe_code)]
pub fn settled_rss_bytes() -> u64 {
    // Links mimalloc's C library into every binary of this crate, tests
    // included, whichever allocator it uses: `mi_collect` is in it.
    use mimalloc as _;
    unsafe extern "C" {
        fn mi_collect(force: bool);
    }
    // SAFETY: `mi_collect` only frees memory mimalloc already considers free.
    unsafe { mi_collect(true) };
    rss_bytes()
}

/// Memory the machine can still give, bytes (`MemAvailable`).
pub fn mem_available_bytes() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes this process has caused to be written to storage
/// (`write_bytes` of `/proc/self/io`); 0 if unavailable.
pub fn io_write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Memory mappings (VMAs) of this process: `vm.max_map_count` caps them.
pub fn map_count() -> u64 {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count() as u64)
}

/// The kernel's cap on mappings per process.
pub fn max_map_count() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// The kernel's unit of CPU time in `/proc` (`USER_HZ`), fixed at 100 per
/// second on Linux whatever the kernel's own tick.
const TICKS_PER_S: f64 = 100.0;

/// CPU time a process has used so far (user and system, all its threads,
/// exited ones included), in seconds; `None` if `/proc/<pid>/stat` cannot
/// be read. Resolution: 10 ms.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / TICKS_PER_S)
}

/// The machine's CPU time so far, in seconds: `(idle, total)` over all cores.
pub fn machine_cpu_s() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
    let total: u64 = ticks.iter().take(8).sum();
    Some((idle as f64 / TICKS_PER_S, total as f64 / TICKS_PER_S))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_medians() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&s, 0.5), 50);
        assert_eq!(quantile(&s, 0.99), 99);
        assert_eq!(quantile(&s, 1.0), 100);
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn reads_its_own_memory() {
        assert!(rss_bytes() > 0);
        assert!(map_count() > 0);
    }

    #[test]
    fn counts_the_cpu_time_a_process_spends() {
        let pid = std::process::id();
        let before = process_cpu_s(pid).expect("own /proc stat");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spent = process_cpu_s(pid).expect("own /proc stat") - before;
        // A busy thread for 300 ms, on a machine that may lend it less.
        assert!((0.05..=1.0).contains(&spent), "spent {spent} s");
        let (idle, total) = machine_cpu_s().expect("/proc/stat");
        assert!(total > 0.0 && idle <= total);
    }
}
