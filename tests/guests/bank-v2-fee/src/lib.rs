//! The bank example (`examples/bank`) with one rule changed: a withdrawal
//! over 100 also charges a fee of 1 (a new event, `FeeCharged`). Every
//! other decision is v1's, so `aether-host verify` on v1's history must
//! report exactly the withdrawals over 100 as divergent.

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
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccountEvent {
    Opened {
        owner: String,
    },
    Deposited {
        amount: u64,
    },
    Withdrawn {
        amount: u64,
    },
    Closed,
    /// New in v2: the fee on a withdrawal over [`FEE_THRESHOLD`].
    FeeCharged {
        amount: u64,
    },
}

/// Withdrawals over this amount cost [`FEE`] (the one rule v2 changes).
pub const FEE_THRESHOLD: u64 = 100;
pub const FEE: u64 = 1;

/// Rejection codes, stable for clients.
pub mod codes {
    pub const ALREADY_OPEN: &str = "already-open";
    pub const NOT_OPEN: &str = "not-open";
    pub const INSUFFICIENT_FUNDS: &str = "insufficient-funds";
    pub const NOT_EMPTY: &str = "not-empty";
    pub const INVALID_AMOUNT: &str = "invalid-amount";
}

impl Aggregate for Account {
    const NAME: &'static str = "Account";
    type Command = AccountCommand;
    type Event = AccountEvent;

    fn handle(&self, ctx: &Context, command: AccountCommand) -> Result<Vec<AccountEvent>, Rejection> {
        use AccountCommand::*;
        if !self.open && !matches!(command, Open { .. }) {
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
            Deposit { amount: 0 } | Withdraw { amount: 0 } => {
                Err(Rejection::new(codes::INVALID_AMOUNT, "the amount must be at least 1"))
            }
            Deposit { amount } => match self.balance.checked_add(amount) {
                Some(_) => Ok(vec![AccountEvent::Deposited { amount }]),
                None => Err(Rejection::new(codes::INVALID_AMOUNT, "the balance would overflow")),
            },
            Withdraw { amount } => {
                let fee = if amount > FEE_THRESHOLD { FEE } else { 0 };
                if amount.saturating_add(fee) > self.balance {
                    return Err(Rejection::new(
                        codes::INSUFFICIENT_FUNDS,
                        format!("cannot withdraw {amount} (fee {fee}): the balance is {}", self.balance),
                    ));
                }
                let mut events = vec![AccountEvent::Withdrawn { amount }];
                if fee > 0 {
                    events.push(AccountEvent::FeeCharged { amount: fee });
                }
                Ok(events)
            }
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
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
            AccountEvent::Closed => self.open = false,
            AccountEvent::FeeCharged { amount } => self.balance -= amount,
        }
    }
}

aether_guest::domain!(name: "bank", aggregates: [Account]);
