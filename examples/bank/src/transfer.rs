//! Money transfers: the `Transfer` aggregate records a transfer's fate, the
//! `TransferSaga` policy moves the money.
//!
//! ```text
//! Transfer.Start ──▶ Started ──saga──▶ Account(from).Debit ──▶ Debited ──saga──▶ Account(to).Credit ──▶ Credited ──saga──▶ Transfer.Complete ──▶ Completed
//!                                            │ rejected                                 │ rejected
//!                                            ▼                                          ▼
//!                                  Transfer.Fail ──▶ Failed            Account(from).Refund + Transfer.Fail ──▶ Failed
//! ```
//!
//! The saga is stateless: each step carries what the next needs (the debit
//! names the target, the credit the source), and a rejected step comes back
//! to it as a rejection of the command it sent (`Policy::rejected`). A
//! transfer refused for insufficient funds fails with nothing moved; one
//! whose credit is refused (the target is not open) gives the money back
//! to the source, then fails. Either way the money is conserved.

use crate::Account;
use crate::codes;
use aether_guest::{Aggregate, Context, Envelope, JsonSchema, Policy, Rejected, Rejection, SendCommand};
use serde::{Deserialize, Serialize};

/// A transfer of `amount` from one account to another (actor id: the transfer's id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Transfer {
    pub status: TransferStatus,
    pub from: String,
    pub to: String,
    pub amount: u64,
}

/// Where a transfer is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TransferStatus {
    #[default]
    New,
    /// Started; the saga is moving the money.
    Pending,
    Completed,
    /// Ended with nothing moved, for this reason.
    Failed {
        reason: String,
    },
}

/// What can be asked of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TransferCommand {
    /// Starts moving `amount` from `from` to `to`.
    Start { from: String, to: String, amount: u64 },
    /// The money reached the target (sent by the saga).
    Complete,
    /// The money could not move, and none did (sent by the saga).
    Fail { reason: String },
}

/// What happened to a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TransferEvent {
    Started { from: String, to: String, amount: u64 },
    Completed,
    Failed { reason: String },
}

impl Aggregate for Transfer {
    const NAME: &'static str = "Transfer";
    type Command = TransferCommand;
    type Event = TransferEvent;

    fn handle(&self, ctx: &Context, command: TransferCommand) -> Result<Vec<TransferEvent>, Rejection> {
        use TransferCommand::*;
        let id = &ctx.actor_id;
        match (&self.status, command) {
            (TransferStatus::New, Start { amount: 0, .. }) => {
                Err(Rejection::new(codes::INVALID_AMOUNT, "the amount must be at least 1"))
            }
            (TransferStatus::New, Start { from, to, .. }) if from == to => Err(Rejection::new(
                codes::SAME_ACCOUNT,
                format!("transfer {id} would move money from {from} to itself"),
            )),
            (TransferStatus::New, Start { from, to, amount }) => Ok(vec![TransferEvent::Started { from, to, amount }]),
            (_, Start { .. }) => {
                Err(Rejection::new(codes::ALREADY_STARTED, format!("transfer {id} was already started")))
            }
            (TransferStatus::Pending, Complete) => Ok(vec![TransferEvent::Completed]),
            (TransferStatus::Pending, Fail { reason }) => Ok(vec![TransferEvent::Failed { reason }]),
            (status, Complete | Fail { .. }) => {
                Err(Rejection::new(codes::NOT_PENDING, format!("transfer {id} is not under way ({status:?})")))
            }
        }
    }

    fn apply(&mut self, event: &TransferEvent) {
        match event {
            TransferEvent::Started { from, to, amount } => {
                self.status = TransferStatus::Pending;
                self.from.clone_from(from);
                self.to.clone_from(to);
                self.amount = *amount;
            }
            TransferEvent::Completed => self.status = TransferStatus::Completed,
            TransferEvent::Failed { reason } => self.status = TransferStatus::Failed { reason: reason.clone() },
        }
    }
}

/// The transfer events the saga reacts to: a start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaTransferEvent {
    Started { from: String, to: String, amount: u64 },
}

/// The account events the saga reacts to: the steps of a transfer (as
/// struct variants: the same wire as the account's boxed ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaAccountEvent {
    Debited { transfer: String, to: String, amount: u64 },
    Credited { transfer: String, from: String, amount: u64 },
}

/// The account commands the saga sends: the steps of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaAccountCommand {
    Debit { transfer: String, to: String, amount: u64 },
    Credit { transfer: String, from: String, amount: u64 },
    Refund { transfer: String, amount: u64 },
}

/// The transfer commands the saga sends: the end of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SagaTransferCommand {
    Complete,
    Fail { reason: String },
}

aether_guest::messages! {
    /// What [`TransferSaga`] reacts to.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum SagaEvent {
        Transfer(SagaTransferEvent) of Transfer,
        Account(SagaAccountEvent) of Account,
    }
}

aether_guest::messages! {
    /// What [`TransferSaga`] sends.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum SagaCommand {
        Account(SagaAccountCommand) of Account,
        Transfer(SagaTransferCommand) of Transfer,
    }
}

/// Moves a transfer's money: debit the source, credit the target, complete;
/// on a refused debit, fail; on a refused credit, refund the source and fail.
#[derive(Debug)]
pub struct TransferSaga;

impl Policy for TransferSaga {
    const NAME: &'static str = "TransferSaga";
    type Event = SagaEvent;
    type Command = SagaCommand;

    fn react(event: &Envelope<SagaEvent>) -> Vec<SendCommand<SagaCommand>> {
        let transfer = event.actor_id.clone();
        match &event.event {
            SagaEvent::Transfer(SagaTransferEvent::Started { from, to, amount }) => {
                vec![SendCommand::to(from, SagaAccountCommand::Debit { transfer, to: to.clone(), amount: *amount })]
            }
            SagaEvent::Account(SagaAccountEvent::Debited { transfer, to, amount }) => vec![SendCommand::to(
                to,
                SagaAccountCommand::Credit {
                    transfer: transfer.clone(),
                    from: event.actor_id.clone(),
                    amount: *amount,
                },
            )],
            SagaEvent::Account(SagaAccountEvent::Credited { transfer, .. }) => {
                vec![SendCommand::to(transfer, SagaTransferCommand::Complete)]
            }
        }
    }

    fn rejected(rejected: &Rejected<SagaCommand>) -> Vec<SendCommand<SagaCommand>> {
        let why = &rejected.rejection;
        match &rejected.sent.command {
            SagaCommand::Account(SagaAccountCommand::Debit { transfer, .. }) => {
                vec![SendCommand::to(transfer, SagaTransferCommand::Fail { reason: why.code.clone() })]
            }
            SagaCommand::Account(SagaAccountCommand::Credit { transfer, from, amount }) => vec![
                SendCommand::to(from, SagaAccountCommand::Refund { transfer: transfer.clone(), amount: *amount }),
                SendCommand::to(transfer, SagaTransferCommand::Fail { reason: why.code.clone() }),
            ],
            // A refund is never refused to an account that was debited, and a
            // transfer refuses an end only when it has ended: nothing to undo.
            SagaCommand::Account(SagaAccountCommand::Refund { .. }) | SagaCommand::Transfer(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccountEvent;
    use aether_guest::testing::{given, policy};

    fn started() -> TransferEvent {
        TransferEvent::Started { from: "a".into(), to: "b".into(), amount: 5 }
    }

    fn debit() -> SendCommand<SagaCommand> {
        SendCommand::to("a", SagaAccountCommand::Debit { transfer: "t-1".into(), to: "b".into(), amount: 5 })
    }

    fn credit() -> SendCommand<SagaCommand> {
        SendCommand::to("b", SagaAccountCommand::Credit { transfer: "t-1".into(), from: "a".into(), amount: 5 })
    }

    #[test]
    fn a_transfer_starts_once_and_ends_once() {
        given::<Transfer>([])
            .when(TransferCommand::Start { from: "a".into(), to: "b".into(), amount: 5 })
            .then_expect_events([started()]);
        given::<Transfer>([started()])
            .when(TransferCommand::Start { from: "a".into(), to: "c".into(), amount: 5 })
            .then_expect_rejection(codes::ALREADY_STARTED);
        given::<Transfer>([])
            .when(TransferCommand::Start { from: "a".into(), to: "a".into(), amount: 5 })
            .then_expect_rejection(codes::SAME_ACCOUNT);
        given::<Transfer>([]).when(TransferCommand::Complete).then_expect_rejection(codes::NOT_PENDING);
        let state = given::<Transfer>([started()])
            .when(TransferCommand::Fail { reason: "insufficient-funds".into() })
            .then_expect_events([TransferEvent::Failed { reason: "insufficient-funds".into() }])
            .state();
        assert_eq!(state.status, TransferStatus::Failed { reason: "insufficient-funds".into() });
        given::<Transfer>([started(), TransferEvent::Completed])
            .when(TransferCommand::Fail { reason: "late".into() })
            .then_expect_rejection(codes::NOT_PENDING);
    }

    #[test]
    fn the_saga_debits_then_credits_then_completes() {
        policy::<TransferSaga>()
            .given::<Transfer>("t-1", [started()])
            .given::<Account>("a", [AccountEvent::Opened { owner: "ada".into() }, AccountEvent::debited("t-1", "b", 5)])
            .given::<Account>("b", [AccountEvent::credited("t-1", "a", 5)])
            .then_expect_commands([debit(), credit(), SendCommand::to("t-1", SagaTransferCommand::Complete)]);
    }

    #[test]
    fn a_refused_debit_fails_the_transfer_with_nothing_moved() {
        policy::<TransferSaga>()
            .given_rejected(debit(), Rejection::new(codes::INSUFFICIENT_FUNDS, "cannot debit 5: the balance is 1"))
            .then_expect_commands([SendCommand::to(
                "t-1",
                SagaTransferCommand::Fail { reason: codes::INSUFFICIENT_FUNDS.into() },
            )]);
    }

    #[test]
    fn a_refused_credit_refunds_the_source_and_fails_the_transfer() {
        policy::<TransferSaga>()
            .given_rejected(credit(), Rejection::new(codes::NOT_OPEN, "account b is not open"))
            .then_expect_commands([
                SendCommand::to("a", SagaAccountCommand::Refund { transfer: "t-1".into(), amount: 5 }),
                SendCommand::to("t-1", SagaTransferCommand::Fail { reason: codes::NOT_OPEN.into() }),
            ]);
    }

    #[test]
    fn the_saga_ignores_what_it_does_not_react_to() {
        policy::<TransferSaga>()
            .given::<Account>("a", [AccountEvent::Deposited { amount: 5 }, AccountEvent::Closed])
            .given::<Transfer>("t-1", [TransferEvent::Completed])
            .then_expect_commands([]);
    }
}
