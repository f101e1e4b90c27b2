//! Example domain: bank accounts, and money transfers between them.
//!
//! The aggregate `Account` has commands `Open`, `Deposit`, `Withdraw` and
//! `Close`, and events `Opened`, `Deposited`, `Withdrawn` and `Closed`. These
//! names are fixed: the README, the CLI tour and the tests script against
//! them. For transfers it also takes `Debit`, `Credit` and `Refund`, each
//! naming the transfer (events `Debited`, `Credited`, `Refunded`).
//!
//! # Layout
//!
//! - this file: [`Account`].
//! - [`transfer`]: the `Transfer` aggregate and the `TransferSaga` policy
//!   that moves the money (a saga: debit, credit, compensate).
//! - [`owners`]: the `AccountsByOwner` read model (each account's owner and
//!   balance, indexed by owner).
//! - [`codes`]: the rejection codes; `transfer_events`: the payloads of the
//!   account events a transfer causes (both shared as source by the bank's
//!   v2 test guests).

pub mod codes;
pub mod owners;
pub mod transfer;
mod transfer_events;

pub use owners::{AccountRow, AccountsByOwner};
pub use transfer::{Transfer, TransferCommand, TransferEvent, TransferSaga, TransferStatus};
pub use transfer_events::{TransferCredit, TransferDebit, TransferRefund};

use aether_guest::{Aggregate, Context, JsonSchema, Rejection};
use serde::{Deserialize, Serialize};

/// A bank account. Its state is `{ owner, balance, open }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Account {
    pub owner: String,
    pub balance: u64,
    pub open: bool,
}

/// What can be asked of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccountCommand {
    /// Opens the account for an owner.
    Open { owner: String },
    /// Puts money in.
    Deposit { amount: u64 },
    /// Takes money out; never more than the balance.
    Withdraw { amount: u64 },
    /// Closes an empty account.
    Close,
    /// Takes money out for a transfer to `to`; never more than the balance.
    Debit { transfer: String, to: String, amount: u64 },
    /// Puts in the money of a transfer from `from`.
    Credit { transfer: String, from: String, amount: u64 },
    /// Gives back the money of a transfer that could not be credited; taken
    /// even by a closed account, whose money it was.
    Refund { transfer: String, amount: u64 },
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
    Closed,
    // Boxed: unboxed, these would more than double the enum's size in a
    // guest, and every replay of the common events above would pay for the
    // moves (docs/performance.md). The wire is the same as a struct
    // variant's: the name, then the fields.
    Debited(Box<TransferDebit>),
    Credited(Box<TransferCredit>),
    Refunded(Box<TransferRefund>),
}

impl Aggregate for Account {
    const NAME: &'static str = "Account";
    type Command = AccountCommand;
    type Event = AccountEvent;

    fn handle(&self, ctx: &Context, command: AccountCommand) -> Result<Vec<AccountEvent>, Rejection> {
        use AccountCommand::*;
        // A refund goes to any account that was ever opened, closed or not:
        // the money was its own.
        let refund_to_closed = matches!(command, Refund { .. }) && ctx.version > 0;
        if !self.open && !matches!(command, Open { .. }) && !refund_to_closed {
            return Err(Rejection::new(codes::NOT_OPEN, format!("account {} is not open", ctx.actor_id)));
        }
        match command {
            Open { .. } if self.open || ctx.version > 0 => {
                Err(Rejection::new(codes::ALREADY_OPEN, format!("account {} was already opened", ctx.actor_id)))
            }
            Open { owner } => {
                aether_guest::info!("opening account {} for {owner}", ctx.actor_id);
                Ok(vec![AccountEvent::Opened { owner }])
            }
            Deposit { amount: 0 }
            | Withdraw { amount: 0 }
            | Debit { amount: 0, .. }
            | Credit { amount: 0, .. }
            | Refund { amount: 0, .. } => Err(Rejection::new(codes::INVALID_AMOUNT, "the amount must be at least 1")),
            Deposit { amount } => self.credit(amount).map(|()| vec![AccountEvent::Deposited { amount }]),
            Credit { transfer, from, amount } => {
                self.credit(amount).map(|()| vec![AccountEvent::credited(transfer, from, amount)])
            }
            Withdraw { amount } => self.debit("withdraw", amount).map(|()| vec![AccountEvent::Withdrawn { amount }]),
            Debit { transfer, to, amount } => {
                self.debit("debit", amount).map(|()| vec![AccountEvent::debited(transfer, to, amount)])
            }
            Refund { transfer, amount } => self.credit(amount).map(|()| vec![AccountEvent::refunded(transfer, amount)]),
            Close if self.balance > 0 => Err(Rejection::new(
                codes::NOT_EMPTY,
                format!("cannot close with a balance of {}; withdraw it first", self.balance),
            )),
            Close => Ok(vec![AccountEvent::Closed]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => {
                self.owner.clone_from(owner);
                self.open = true;
            }
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Credited(credit) => self.balance += credit.amount,
            AccountEvent::Refunded(refund) => self.balance += refund.amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
            AccountEvent::Debited(debit) => self.balance -= debit.amount,
            AccountEvent::Closed => self.open = false,
        }
    }
}

impl Account {
    fn credit(&self, amount: u64) -> Result<(), Rejection> {
        match self.balance.checked_add(amount) {
            Some(_) => Ok(()),
            None => Err(Rejection::new(codes::INVALID_AMOUNT, "the balance would overflow")),
        }
    }

    fn debit(&self, verb: &str, amount: u64) -> Result<(), Rejection> {
        if amount > self.balance {
            return Err(Rejection::new(
                codes::INSUFFICIENT_FUNDS,
                format!("cannot {verb} {amount}: the balance is {}", self.balance),
            ));
        }
        Ok(())
    }
}

aether_guest::domain!(
    name: "bank",
    aggregates: [Account, Transfer],
    policies: [TransferSaga],
    read_models: [AccountsByOwner],
);

#[cfg(test)]
mod tests {
    use super::*;
    use AccountCommand::*;
    use AccountEvent::*;
    use aether_guest::testing::given;

    fn opened() -> AccountEvent {
        Opened { owner: "ada".into() }
    }

    #[test]
    fn opens_once() {
        given::<Account>([]).when(Open { owner: "ada".into() }).then_expect_events([opened()]);
        given::<Account>([opened()]).when(Open { owner: "bob".into() }).then_expect_rejection(codes::ALREADY_OPEN);
    }

    #[test]
    fn closed_accounts_cannot_be_reopened() {
        given::<Account>([opened(), Closed])
            .when(Open { owner: "bob".into() })
            .then_expect_rejection(codes::ALREADY_OPEN);
    }

    #[test]
    fn deposits_and_withdraws_within_the_balance() {
        let state = given::<Account>([opened(), Deposited { amount: 10 }])
            .when(Withdraw { amount: 4 })
            .then_expect_events([Withdrawn { amount: 4 }])
            .state();
        assert_eq!(state, Account { owner: "ada".into(), balance: 6, open: true });
        given::<Account>([opened(), Deposited { amount: 10 }])
            .when(Withdraw { amount: 11 })
            .then_expect_rejection(codes::INSUFFICIENT_FUNDS);
        given::<Account>([opened()]).when(Deposit { amount: 0 }).then_expect_rejection(codes::INVALID_AMOUNT);
    }

    #[test]
    fn unopened_accounts_refuse_everything_but_open() {
        for cmd in [Deposit { amount: 1 }, Withdraw { amount: 1 }, Close] {
            given::<Account>([]).when(cmd).then_expect_rejection(codes::NOT_OPEN);
        }
        given::<Account>([opened(), Closed]).when(Deposit { amount: 1 }).then_expect_rejection(codes::NOT_OPEN);
    }

    #[test]
    fn closes_only_when_empty() {
        given::<Account>([opened(), Deposited { amount: 1 }]).when(Close).then_expect_rejection(codes::NOT_EMPTY);
        let state = given::<Account>([opened()]).when(Close).then_expect_events([Closed]).state();
        assert!(!state.open);
    }

    #[test]
    fn the_model_names_what_clients_script_against() {
        let model = describe();
        assert_eq!(model.name, "bank");
        let account = &model.aggregates[0];
        assert_eq!(account.name, "Account");
        let names = |ms: &[aether_guest::MessageModel]| ms.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&account.commands), ["Open", "Deposit", "Withdraw", "Close", "Debit", "Credit", "Refund"]);
        assert_eq!(
            names(&account.events),
            ["Opened", "Deposited", "Withdrawn", "Closed", "Debited", "Credited", "Refunded"]
        );
        let saga = &model.policies[0];
        assert_eq!(saga.name, "TransferSaga");
        assert_eq!(saga.reacts_to, ["Transfer.Started", "Account.Debited", "Account.Credited"]);
        assert_eq!(
            saga.sends,
            ["Account.Debit", "Account.Credit", "Account.Refund", "Transfer.Complete", "Transfer.Fail"]
        );
        let owners = &model.read_models[0];
        assert_eq!(owners.name, "AccountsByOwner");
        assert_eq!(owners.indexes, ["owner"]);
        assert!(owners.row_schema.contains("balance"), "{}", owners.row_schema);
    }

    #[test]
    fn transfers_debit_and_credit_naming_the_transfer() {
        let debit = Debit { transfer: "t".into(), to: "b".into(), amount: 4 };
        given::<Account>([opened(), Deposited { amount: 10 }])
            .when(debit.clone())
            .then_expect_events([AccountEvent::debited("t", "b", 4)]);
        given::<Account>([opened(), Deposited { amount: 3 }])
            .when(debit)
            .then_expect_rejection(codes::INSUFFICIENT_FUNDS);
        let state = given::<Account>([opened()])
            .when(Credit { transfer: "t".into(), from: "a".into(), amount: 4 })
            .then_expect_events([AccountEvent::credited("t", "a", 4)])
            .state();
        assert_eq!(state.balance, 4);
        given::<Account>([])
            .when(Credit { transfer: "t".into(), from: "a".into(), amount: 4 })
            .then_expect_rejection(codes::NOT_OPEN);
    }

    #[test]
    fn a_refund_reaches_a_closed_account_but_not_one_never_opened() {
        let refund = || Refund { transfer: "t".into(), amount: 4 };
        let state = given::<Account>([opened(), AccountEvent::debited("t", "b", 0), Closed])
            .when(refund())
            .then_expect_events([AccountEvent::refunded("t", 4)])
            .state();
        assert_eq!((state.balance, state.open), (4, false));
        given::<Account>([]).when(refund()).then_expect_rejection(codes::NOT_OPEN);
        given::<Account>([opened()])
            .when(Refund { transfer: "t".into(), amount: 0 })
            .then_expect_rejection(codes::INVALID_AMOUNT);
    }
}
