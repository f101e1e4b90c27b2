//! The bank component as the host runs it: built to wasm, loaded on the
//! in-memory store, driven with given/when/then.

use aether_host::testkit::TestKit;
use bank::{Account, AccountCommand::*, AccountEvent::*, codes};

async fn kit() -> TestKit {
    TestKit::for_crate(env!("CARGO_MANIFEST_DIR")).await
}

#[tokio::test]
async fn opens_deposits_withdraws_and_closes() {
    let kit = kit().await;
    kit.given::<bank::AccountEvent>("Account", "a", [])
        .await
        .when(Open { owner: "ada".into() })
        .await
        .then_expect_events([Opened { owner: "ada".into() }]);
    kit.given("Account", "a", [Deposited { amount: 10 }])
        .await
        .when(Withdraw { amount: 10 })
        .await
        .then_expect_events([Withdrawn { amount: 10 }]);
    let then = kit.given::<bank::AccountEvent>("Account", "a", []).await.when(Close).await.then_expect_events([Closed]);
    let state: Account = then.state().await;
    assert_eq!(state, Account { owner: "ada".into(), balance: 0, open: false });
}

#[tokio::test]
async fn every_rejection_crosses_the_boundary_with_its_code() {
    let kit = kit().await;
    let opened = || Opened { owner: "ada".into() };
    kit.given("Account", "r1", [opened()])
        .await
        .when(Open { owner: "bob".into() })
        .await
        .then_expect_rejection(codes::ALREADY_OPEN);
    kit.given::<bank::AccountEvent>("Account", "r2", [])
        .await
        .when(Deposit { amount: 1 })
        .await
        .then_expect_rejection(codes::NOT_OPEN);
    kit.given("Account", "r3", [opened(), Deposited { amount: 5 }])
        .await
        .when(Withdraw { amount: 6 })
        .await
        .then_expect_rejection(codes::INSUFFICIENT_FUNDS);
    kit.given("Account", "r4", [opened(), Deposited { amount: 5 }])
        .await
        .when(Close)
        .await
        .then_expect_rejection(codes::NOT_EMPTY);
    kit.given("Account", "r5", [opened()])
        .await
        .when(Deposit { amount: 0 })
        .await
        .then_expect_rejection(codes::INVALID_AMOUNT);
}
