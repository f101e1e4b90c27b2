//! The bank component as the host runs it: built to wasm, loaded on the
//! in-memory store, driven with given/when/then.

use aether_testkit::TestKit;
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

#[tokio::test]
async fn the_transfer_saga_runs_in_the_component() {
    use aether_guest::SendCommand;
    use bank::transfer::{SagaAccountCommand as Account, SagaCommand, SagaTransferCommand as Transfer};
    use bank::{AccountEvent, TransferEvent};
    let kit = kit().await;
    let debit = || SendCommand::to("a", Account::Debit { transfer: "t-1".into(), to: "b".into(), amount: 5 });
    let credit = || SendCommand::to("b", Account::Credit { transfer: "t-1".into(), from: "a".into(), amount: 5 });
    kit.policy("TransferSaga")
        .given("Transfer", "t-1", [TransferEvent::Started { from: "a".into(), to: "b".into(), amount: 5 }])
        .await
        .given("Account", "a", [AccountEvent::Opened { owner: "ada".into() }, AccountEvent::debited("t-1", "b", 5)])
        .await
        .given("Account", "b", [AccountEvent::credited("t-1", "a", 5)])
        .await
        .then_expect_commands::<SagaCommand>([debit(), credit(), SendCommand::to("t-1", Transfer::Complete)]);
    kit.policy("TransferSaga")
        .given_rejected(debit(), codes::INSUFFICIENT_FUNDS, "cannot debit 5: the balance is 0")
        .then_expect_commands::<SagaCommand>([SendCommand::to(
        "t-1",
        Transfer::Fail { reason: codes::INSUFFICIENT_FUNDS.into() },
    )]);
    kit.policy("TransferSaga")
        .given_rejected(credit(), codes::NOT_OPEN, "account b is not open")
        .then_expect_commands::<SagaCommand>([
            SendCommand::to("a", Account::Refund { transfer: "t-1".into(), amount: 5 }),
            SendCommand::to("t-1", Transfer::Fail { reason: codes::NOT_OPEN.into() }),
        ]);
}

#[tokio::test]
async fn a_transfer_and_its_steps_are_decided_by_the_component() {
    use bank::{AccountEvent, TransferCommand, TransferEvent};
    let kit = kit().await;
    kit.given::<TransferEvent>("Transfer", "t-1", [])
        .await
        .when(TransferCommand::Start { from: "a".into(), to: "b".into(), amount: 5 })
        .await
        .then_expect_events([TransferEvent::Started { from: "a".into(), to: "b".into(), amount: 5 }]);
    kit.given("Account", "a", [Opened { owner: "ada".into() }, Deposited { amount: 3 }])
        .await
        .when(Debit { transfer: "t-1".into(), to: "b".into(), amount: 5 })
        .await
        .then_expect_rejection(codes::INSUFFICIENT_FUNDS);
    kit.given::<AccountEvent>("Account", "b", [])
        .await
        .when(Credit { transfer: "t-1".into(), from: "a".into(), amount: 5 })
        .await
        .then_expect_rejection(codes::NOT_OPEN);
}

#[tokio::test]
async fn accounts_by_owner_folds_in_the_component() {
    use bank::AccountRow;
    let kit = kit().await;
    let row = |owner: &str, balance, open| AccountRow { owner: owner.into(), balance, open };
    kit.read_model("AccountsByOwner")
        .given("Account", "a", [Opened { owner: "ada".into() }, Deposited { amount: 10 }, Withdrawn { amount: 3 }])
        .await
        .given("Account", "b", [Opened { owner: "bob".into() }, Closed])
        .await
        .given("Account", "a", [bank::AccountEvent::debited("t", "b", 7)])
        .await
        .then_expect_rows([("a", row("ada", 0, true)), ("b", row("bob", 0, false))])
        .then_expect_row::<AccountRow>("c", None);
}
