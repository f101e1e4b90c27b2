//! Rejection codes of the bank, stable for clients.

pub const ALREADY_OPEN: &str = "already-open";
pub const NOT_OPEN: &str = "not-open";
pub const INSUFFICIENT_FUNDS: &str = "insufficient-funds";
pub const NOT_EMPTY: &str = "not-empty";
pub const INVALID_AMOUNT: &str = "invalid-amount";
/// `Transfer`: `Start` of a transfer that was started.
pub const ALREADY_STARTED: &str = "already-started";
/// `Transfer`: `Start` from an account to itself.
pub const SAME_ACCOUNT: &str = "same-account";
/// `Transfer`: `Complete` or `Fail` of a transfer that is not under way.
pub const NOT_PENDING: &str = "not-pending";
