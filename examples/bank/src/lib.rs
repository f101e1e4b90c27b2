//! Example domain: bank accounts.
//!
//! One aggregate, `Account`, with commands `Open`, `Deposit`, `Withdraw` and
//! `Close`, and events `Opened`, `Deposited`, `Withdrawn` and `Closed`. These
//! names are fixed: the README, the CLI tour and the tests script against them.

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
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
    Closed,
}

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
            Withdraw { amount } if amount > self.balance => Err(Rejection::new(
                codes::INSUFFICIENT_FUNDS,
                format!("cannot withdraw {amount}: the balance is {}", self.balance),
            )),
            Withdraw { amount } => Ok(vec![AccountEvent::Withdrawn { amount }]),
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
        }
    }
}

aether_guest::domain!(name: "bank", aggregates: [Account]);

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
        assert_eq!(names(&account.commands), ["Open", "Deposit", "Withdraw", "Close"]);
        assert_eq!(names(&account.events), ["Opened", "Deposited", "Withdrawn", "Closed"]);
    }
}
