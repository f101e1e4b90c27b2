//! `aether_host::verify` on the in-memory store: commands of several events
//! decided whole whatever the read size, and an older component meeting an
//! event it does not know.

use super::support;
use aether_host::verify::{VerifyConfig, verify};
use aether_host::{AetherEngine, DomainComponent, EngineConfig};
use aether_testkit::TestKit;
use bank::AccountCommand::*;

/// Bank v2 (a fee on withdrawals over 100) writes commands of two events.
async fn fee_history() -> TestKit {
    let kit = TestKit::from_file(&support::component("tests/guests/bank-v2-fee")).await;
    for command in [
        Open { owner: "ada".into() },
        Deposit { amount: 1000 },
        Withdraw { amount: 150 },
        Withdraw { amount: 200 },
        Deposit { amount: 1 },
    ] {
        kit.send("Account", "f", &command, None).await.unwrap();
    }
    kit
}

#[tokio::test]
async fn commands_of_several_events_are_decided_whole_whatever_the_read_size() {
    let kit = fee_history().await;
    for replay_batch in [1, 2, 3, 512] {
        let config = VerifyConfig::default().with_replay_batch(replay_batch);
        let report = verify(&kit.runtime().component(), &**kit.store(), &config).await.unwrap();
        let totals = report.totals();
        assert_eq!(
            (totals.actors, totals.events, totals.identical),
            (1, 7, 5),
            "batches of {replay_batch}: {report:#?}"
        );
        assert!(report.is_clean(), "{report:#?}");
    }
}

#[tokio::test]
async fn an_older_component_stops_at_the_first_event_it_does_not_know() {
    let kit = fee_history().await;
    let engine = AetherEngine::new(EngineConfig::default().with_max_instances(8)).unwrap();
    let v1 = DomainComponent::from_file(&engine, &support::component("examples/bank")).unwrap();
    let report = verify(&v1, &**kit.store(), &VerifyConfig::default()).await.unwrap();
    assert_eq!(report.unreadable.len(), 1);
    assert_eq!((report.unreadable[0].id.as_str(), report.unreadable[0].version), ("f", 4), "FeeCharged");
    assert!(report.unreadable[0].cause.contains("FeeCharged"), "{}", report.unreadable[0].cause);
    // The first fee-charging withdrawal is decided without the fee; after
    // it, v1 cannot rebuild the state to judge the rest.
    let totals = report.totals();
    assert_eq!((totals.identical, totals.divergent, totals.not_redecidable), (2, 1, 2), "{report:#?}");
    assert_eq!(report.divergences[0].version, 3);
    assert_eq!(report.divergences[0].stored.len(), 2);
}
