//! Policies and read models through the real host bindings: the host, not
//! the guest, enforces what a policy may send (invariant:
//! policies-send-what-they-declare), and a fault concerns its input alone.

use crate::support;
use aether_host::ActorId;
use aether_host::wasm::RefusalKind;
use aether_host::wasm::{GuestFault, LoggedEvent, PolicyInput};

#[derive(Debug, serde::Serialize)]
enum TrapperEvent {
    Pinged,
}

#[tokio::test]
async fn a_policy_sends_only_what_it_declares() {
    let kit = support::faulty().await;
    let policy = kit.policy("Rogue").given("Trapper", "ok", [TrapperEvent::Pinged]).await;
    assert!(policy.faults().is_empty(), "{:?}", policy.faults());
    let sent = policy.commands();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].aggregate.as_str(), sent[0].actor_id.as_str(), sent[0].command.as_str()),
        ("Trapper", "ok-echo", "Ping")
    );

    kit.policy("Rogue")
        .given("Trapper", "stray", [TrapperEvent::Pinged])
        .await
        .then_expect_fault("policy `Rogue` sent `Looper.Spin`, which it does not declare (it may send: Trapper.Ping)");
    kit.policy("Rogue")
        .given("Trapper", "garble", [TrapperEvent::Pinged])
        .await
        .then_expect_fault("sent `Trapper.Ping` with a payload that is");
}

#[tokio::test]
async fn a_fault_in_a_batch_concerns_its_input_alone() {
    let kit = support::faulty().await;
    let (ok, stray) = (ActorId::new("Trapper", "ok"), ActorId::new("Trapper", "stray"));
    let ok_events = kit.store_events("Trapper", "ok", [TrapperEvent::Pinged, TrapperEvent::Pinged]).await;
    let stray_events = kit.store_events("Trapper", "stray", [TrapperEvent::Pinged]).await;
    let logged = |actor, event| PolicyInput::Event(LoggedEvent { actor, event });
    // One call: ok, stray, ok.
    let inputs = [logged(&ok, &ok_events[0]), logged(&stray, &stray_events[0]), logged(&ok, &ok_events[1])];
    let mut vm = kit.runtime().component().policy_vm("Rogue").unwrap();
    let reactions = vm.react(&inputs).expect("the call as a whole succeeds");
    assert_eq!(reactions.len(), 3);
    for i in [0, 2] {
        let sent = reactions[i].as_ref().unwrap_or_else(|e| panic!("input {i}: {e}"));
        assert_eq!((sent.len(), sent[0].actor_id.as_str()), (1, "ok-echo"), "input {i}");
    }
    assert!(
        matches!(&reactions[1], Err(GuestFault::InvalidOutput { call: "react", reason }) if reason.contains("Looper.Spin")),
        "{:?}",
        reactions[1]
    );
}

#[tokio::test]
async fn a_policy_that_traps_faults_the_whole_call() {
    let kit = support::faulty().await;
    kit.policy("Rogue")
        .given("Trapper", "panic", [TrapperEvent::Pinged])
        .await
        .then_expect_fault("guest trapped in `react`: ");
}

#[tokio::test]
async fn only_the_model_s_policies_and_read_models_get_a_vm() {
    let kit = support::faulty().await;
    let component = kit.runtime().component();
    let Err(GuestFault::Refused { kind, reason, .. }) = component.policy_vm("Nope") else { panic!("refused") };
    assert_eq!(kind, RefusalKind::UnknownPolicy);
    assert!(reason.contains("no policy `Nope` (it has: Rogue)"), "{reason}");
    let Err(GuestFault::Refused { kind, .. }) = component.read_model_vm("Rogue") else { panic!("refused") };
    assert_eq!(kind, RefusalKind::UnknownReadModel);
}

#[tokio::test]
async fn a_read_model_folds_batches_per_key_and_its_rows_are_checked() {
    let kit = support::faulty().await;
    kit.read_model("Pings")
        .given("Trapper", "a", [TrapperEvent::Pinged, TrapperEvent::Pinged])
        .await
        .given("Trapper", "b", [TrapperEvent::Pinged])
        .await
        .given("Trapper", "a", [TrapperEvent::Pinged])
        .await
        .then_expect_rows([("a", 3u64), ("b", 1u64)]);
    kit.read_model("Pings")
        .given("Trapper", "garble", [TrapperEvent::Pinged])
        .await
        .then_expect_fault("folded the row `garble` into a value that is");
}
