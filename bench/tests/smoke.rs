//! CI runs the benchmarks as a smoke test: tiny sizes, a few seconds, every
//! phase exercised and its figures printed, no thresholds asserted (a shared
//! CI machine's speed says nothing about the code's).

use aether_bench::{Options, run};

#[test]
fn every_phase_runs_and_reports() {
    let options = Options { smoke: true, probe_exe: Some(env!("CARGO_BIN_EXE_aether-bench").into()), only: vec![] };
    let report = run(&options).unwrap_or_else(|e| panic!("the benchmarks failed: {e:#}"));
    println!("{}", report.table());
    let json = report.json();
    for key in [
        "activation_p50_us",
        "activation_p99_us",
        "replay_events_per_s",
        "replay_native_events_per_s",
        "verify_events_per_s",
        "verify_commands_per_s",
        "verify_replay_events_per_s",
        "policy_events_per_s",
        "policy_commands_per_s",
        "policy_react_events_per_s",
        "read_model_events_per_s",
        "read_model_fold_events_per_s",
        "commands_per_s_memory",
        "commands_native_per_s",
        "command_p99_us_memory",
        "commands_per_s_embedded",
        "rss_bytes_per_resident_actor",
        "max_resident_actors",
    ] {
        assert!(json[key].is_number(), "summary has no `{key}`: {json}");
    }
}
