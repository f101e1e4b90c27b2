//! The `AccountsByOwner` read model: each account's owner and balance, one
//! row per account, indexed by owner so a client can list an owner's accounts.

use crate::{Account, AccountEvent};
use aether_guest::{Envelope, JsonSchema, ReadModel};
use serde::{Deserialize, Serialize};

/// One account as the read model shows it. Key: the account id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountRow {
    pub owner: String,
    pub balance: u64,
    pub open: bool,
}

aether_guest::messages! {
    /// What [`AccountsByOwner`] folds: every account event.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum OwnersEvent {
        Account(AccountEvent) of Account,
    }
}

/// Accounts with their owner and balance, listable by owner.
#[derive(Debug)]
pub struct AccountsByOwner;

impl ReadModel for AccountsByOwner {
    const NAME: &'static str = "AccountsByOwner";
    type Event = OwnersEvent;
    type Row = AccountRow;
    const INDEXES: &'static [&'static str] = &["owner"];

    fn keys(event: &Envelope<OwnersEvent>) -> Vec<String> {
        vec![event.actor_id.clone()]
    }

    fn fold(_key: &str, row: Option<AccountRow>, event: &Envelope<OwnersEvent>) -> Option<AccountRow> {
        let OwnersEvent::Account(event) = &event.event;
        let mut row = row.unwrap_or_default();
        match event {
            AccountEvent::Opened { owner } => {
                row.owner.clone_from(owner);
                row.open = true;
            }
            AccountEvent::Deposited { amount } => row.balance += amount,
            AccountEvent::Credited(credit) => row.balance += credit.amount,
            AccountEvent::Refunded(refund) => row.balance += refund.amount,
            AccountEvent::Withdrawn { amount } => row.balance -= amount,
            AccountEvent::Debited(debit) => row.balance -= debit.amount,
            AccountEvent::Closed => row.open = false,
        }
        Some(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_guest::testing::read_model;

    fn row(owner: &str, balance: u64, open: bool) -> AccountRow {
        AccountRow { owner: owner.into(), balance, open }
    }

    #[test]
    fn a_row_per_account_follows_its_balance() {
        read_model::<AccountsByOwner>()
            .given::<Account>(
                "a",
                [AccountEvent::Opened { owner: "ada".into() }, AccountEvent::Deposited { amount: 10 }],
            )
            .given::<Account>("b", [AccountEvent::Opened { owner: "ada".into() }])
            .given::<Account>("a", [AccountEvent::debited("t", "b", 4)])
            .given::<Account>("b", [AccountEvent::credited("t", "a", 4)])
            .then_expect_rows([("a", row("ada", 6, true)), ("b", row("ada", 4, true))]);
    }

    #[test]
    fn a_closed_account_keeps_its_row_and_a_refund_counts() {
        read_model::<AccountsByOwner>()
            .given::<Account>(
                "a",
                [
                    AccountEvent::Opened { owner: "bob".into() },
                    AccountEvent::Withdrawn { amount: 0 },
                    AccountEvent::Closed,
                    AccountEvent::refunded("t", 3),
                ],
            )
            .then_expect_row("a", Some(row("bob", 3, false)))
            .then_expect_row("b", None);
    }
}
