//! The payloads of the account events a transfer causes (boxed in
//! [`AccountEvent`]), and their constructors. Shared as source by the bank's
//! v2 test guests.

use crate::AccountEvent;
use aether_guest::JsonSchema;
use serde::{Deserialize, Serialize};

/// Money taken out for a transfer to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TransferDebit {
    pub transfer: String,
    pub to: String,
    pub amount: u64,
}

/// Money put in by a transfer from `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TransferCredit {
    pub transfer: String,
    pub from: String,
    pub amount: u64,
}

/// Money given back for a transfer that could not be credited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TransferRefund {
    pub transfer: String,
    pub amount: u64,
}

impl AccountEvent {
    /// `Debited`, boxed.
    pub fn debited(transfer: impl Into<String>, to: impl Into<String>, amount: u64) -> Self {
        Self::Debited(Box::new(TransferDebit { transfer: transfer.into(), to: to.into(), amount }))
    }

    /// `Credited`, boxed.
    pub fn credited(transfer: impl Into<String>, from: impl Into<String>, amount: u64) -> Self {
        Self::Credited(Box::new(TransferCredit { transfer: transfer.into(), from: from.into(), amount }))
    }

    /// `Refunded`, boxed.
    pub fn refunded(transfer: impl Into<String>, amount: u64) -> Self {
        Self::Refunded(Box::new(TransferRefund { transfer: transfer.into(), amount }))
    }
}
