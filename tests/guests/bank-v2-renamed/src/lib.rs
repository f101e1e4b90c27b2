//! The bank example (`examples/bank`) with one breaking change: the event
//! `Withdrawn` is renamed `MoneyWithdrawn`, so v2 cannot read v1's
//! withdrawals. `aether-host verify` on v1's history must stop each actor
//! at its first `Withdrawn` and report the withdrawals as divergent. It
//! leaves out the bank's read model (upgrades do not check read models yet).

// The bank's transfers, shared as source (a dependency on the bank crate
// would link its component exports too): the saga is typed against this
// crate's `Account`, whose transfer commands and events are the bank's.
#[path = "../../../../examples/bank/src/transfer.rs"]
pub mod transfer;

pub use transfer::{Transfer, TransferCommand, TransferEvent, TransferSaga, TransferStatus};

#[path = "../../../../examples/bank/src/codes.rs"]
pub mod codes;
#[path = "../../../../examples/bank/src/transfer_events.rs"]
mod transfer_events;

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
    MoneyWithdrawn { amount: u64 },
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
            Withdraw { amount } => {
                self.debit("withdraw", amount).map(|()| vec![AccountEvent::MoneyWithdrawn { amount }])
            }
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
            AccountEvent::MoneyWithdrawn { amount } => self.balance -= amount,
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
);
