//! The `Cart` aggregate: a customer's basket of lines, keyed by SKU, until it
//! is checked out.
//!
//! A line keeps one unit price: adding more of a SKU at another price is
//! refused rather than silently repriced, so the total a customer saw is the
//! total they check out. Checking out freezes the cart and records the total
//! and the time, which later commands cannot change.

use crate::codes;
use aether_guest::{Aggregate, Context, JsonSchema, Rejection};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A shopping cart. Its state is `{ lines: { sku: { quantity, unit_price_cents } }, status }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Cart {
    /// The lines, keyed by SKU (string keys, so the map survives MessagePack and JSON).
    pub lines: BTreeMap<String, CartLine>,
    pub status: CartStatus,
}

/// One SKU in a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CartLine {
    pub quantity: u32,
    pub unit_price_cents: u64,
}

/// Whether a cart can still change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CartStatus {
    /// Lines can be added and removed.
    #[default]
    Open,
    /// Frozen at checkout, with the total charged and the command's time.
    CheckedOut { total_cents: u64, at_ms: u64 },
}

/// What can be asked of a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CartCommand {
    /// Adds `quantity` units of a SKU, or more units to an existing line at the same price.
    AddItem { sku: String, quantity: u32, unit_price_cents: u64 },
    /// Removes a SKU's line entirely.
    RemoveItem { sku: String },
    /// Freezes a non-empty cart.
    CheckOut,
}

/// What happened to a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CartEvent {
    ItemAdded { sku: String, quantity: u32, unit_price_cents: u64 },
    ItemRemoved { sku: String },
    CheckedOut { total_cents: u64, at_ms: u64 },
}

impl CartLine {
    /// The line's price, or `None` if it does not fit in a `u64`.
    pub fn total_cents(&self) -> Option<u64> {
        u64::from(self.quantity).checked_mul(self.unit_price_cents)
    }
}

impl Cart {
    /// The sum of the lines, or `None` if it does not fit in a `u64`.
    ///
    /// `AddItem` refuses any line that would make this overflow, so for a cart
    /// built from its own events it is always `Some`.
    pub fn total_cents(&self) -> Option<u64> {
        self.lines.values().try_fold(0u64, |sum, line| sum.checked_add(line.total_cents()?))
    }

    fn add_item(&self, sku: String, quantity: u32, unit_price_cents: u64) -> Result<Vec<CartEvent>, Rejection> {
        if sku.trim().is_empty() {
            return Err(Rejection::new(codes::BLANK_FIELD, "the sku must not be blank"));
        }
        if quantity == 0 {
            return Err(Rejection::new(codes::INVALID_QUANTITY, format!("add at least 1 unit of {sku}")));
        }
        let mut after = self.clone();
        let line = after.lines.entry(sku.clone()).or_insert(CartLine { quantity: 0, unit_price_cents });
        if line.unit_price_cents != unit_price_cents {
            return Err(Rejection::new(
                codes::PRICE_MISMATCH,
                format!(
                    "{sku} is in the cart at {} cents, not {unit_price_cents}; remove the line to reprice it",
                    line.unit_price_cents
                ),
            ));
        }
        line.quantity = line
            .quantity
            .checked_add(quantity)
            .ok_or_else(|| Rejection::new(codes::INVALID_QUANTITY, format!("too many units of {sku}")))?;
        if after.total_cents().is_none() {
            return Err(Rejection::new(codes::INVALID_QUANTITY, "the cart total would overflow"));
        }
        Ok(vec![CartEvent::ItemAdded { sku, quantity, unit_price_cents }])
    }
}

impl Aggregate for Cart {
    const NAME: &'static str = "Cart";
    type Command = CartCommand;
    type Event = CartEvent;

    fn handle(&self, ctx: &Context, command: CartCommand) -> Result<Vec<CartEvent>, Rejection> {
        if let CartStatus::CheckedOut { .. } = self.status {
            return Err(Rejection::new(
                codes::ALREADY_CHECKED_OUT,
                format!("cart {} was checked out and can no longer change", ctx.actor_id),
            ));
        }
        match command {
            CartCommand::AddItem { sku, quantity, unit_price_cents } => self.add_item(sku, quantity, unit_price_cents),
            CartCommand::RemoveItem { sku } if !self.lines.contains_key(&sku) => {
                Err(Rejection::new(codes::ITEM_NOT_IN_CART, format!("{sku} is not in cart {}", ctx.actor_id)))
            }
            CartCommand::RemoveItem { sku } => Ok(vec![CartEvent::ItemRemoved { sku }]),
            CartCommand::CheckOut if self.lines.is_empty() => {
                Err(Rejection::new(codes::EMPTY_CART, format!("cart {} has no items to check out", ctx.actor_id)))
            }
            CartCommand::CheckOut => {
                // Guaranteed by `add_item`; a `None` here would mean forged events.
                let total_cents = self.total_cents().expect("cart total fits in u64");
                Ok(vec![CartEvent::CheckedOut { total_cents, at_ms: ctx.timestamp_ms }])
            }
        }
    }

    fn apply(&mut self, event: &CartEvent) {
        match event {
            CartEvent::ItemAdded { sku, quantity, unit_price_cents } => {
                let line = self.lines.entry(sku.clone()).or_insert(CartLine { quantity: 0, unit_price_cents: 0 });
                line.quantity += quantity;
                line.unit_price_cents = *unit_price_cents;
            }
            CartEvent::ItemRemoved { sku } => {
                self.lines.remove(sku);
            }
            CartEvent::CheckedOut { total_cents, at_ms } => {
                self.status = CartStatus::CheckedOut { total_cents: *total_cents, at_ms: *at_ms };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CartCommand::*;
    use CartEvent::*;
    use aether_guest::testing::given;

    fn added(sku: &str, quantity: u32, unit_price_cents: u64) -> CartEvent {
        ItemAdded { sku: sku.into(), quantity, unit_price_cents }
    }

    fn add(sku: &str, quantity: u32, unit_price_cents: u64) -> CartCommand {
        AddItem { sku: sku.into(), quantity, unit_price_cents }
    }

    fn checked_out() -> CartEvent {
        CheckedOut { total_cents: 500, at_ms: 1_000 }
    }

    #[test]
    fn adds_new_lines_and_more_of_an_existing_line() {
        let state = given::<Cart>([added("mug", 2, 450)])
            .when(add("mug", 3, 450))
            .then_expect_events([added("mug", 3, 450)])
            .state();
        assert_eq!(state.lines["mug"], CartLine { quantity: 5, unit_price_cents: 450 });
        let state = given::<Cart>([added("mug", 2, 450)])
            .when(add("tea", 1, 0))
            .then_expect_events([added("tea", 1, 0)])
            .state();
        assert_eq!(state.lines.keys().collect::<Vec<_>>(), ["mug", "tea"]);
        assert_eq!(state.total_cents(), Some(900));
    }

    #[test]
    fn refuses_zero_quantities_and_blank_skus() {
        given::<Cart>([]).when(add("mug", 0, 450)).then_expect_rejection(codes::INVALID_QUANTITY);
        given::<Cart>([]).when(add("  ", 1, 450)).then_expect_rejection(codes::BLANK_FIELD);
    }

    #[test]
    fn refuses_quantities_and_totals_that_overflow() {
        given::<Cart>([added("mug", u32::MAX, 1)])
            .when(add("mug", 1, 1))
            .then_expect_rejection(codes::INVALID_QUANTITY);
        given::<Cart>([added("gold", 1, u64::MAX)])
            .when(add("mug", 1, 1))
            .then_expect_rejection(codes::INVALID_QUANTITY);
        given::<Cart>([]).when(add("gold", 2, u64::MAX)).then_expect_rejection(codes::INVALID_QUANTITY);
    }

    #[test]
    fn keeps_one_price_per_line() {
        given::<Cart>([added("mug", 1, 450)]).when(add("mug", 1, 400)).then_expect_rejection(codes::PRICE_MISMATCH);
        // Removing the line first is how a price changes.
        given::<Cart>([added("mug", 1, 450), ItemRemoved { sku: "mug".into() }])
            .when(add("mug", 1, 400))
            .then_expect_events([added("mug", 1, 400)]);
    }

    #[test]
    fn removes_only_items_in_the_cart() {
        let state = given::<Cart>([added("mug", 2, 450), added("tea", 1, 300)])
            .when(RemoveItem { sku: "mug".into() })
            .then_expect_events([ItemRemoved { sku: "mug".into() }])
            .state();
        assert!(!state.lines.contains_key("mug"));
        given::<Cart>([added("tea", 1, 300)])
            .when(RemoveItem { sku: "mug".into() })
            .then_expect_rejection(codes::ITEM_NOT_IN_CART);
        given::<Cart>([added("mug", 1, 450), ItemRemoved { sku: "mug".into() }])
            .when(RemoveItem { sku: "mug".into() })
            .then_expect_rejection(codes::ITEM_NOT_IN_CART);
    }

    #[test]
    fn checks_out_with_the_total_and_the_command_time() {
        let ctx = Context { timestamp_ms: 1_000, ..Context::default() };
        let state = given::<Cart>([added("mug", 2, 100), added("tea", 1, 300)])
            .with_context(ctx)
            .when(CheckOut)
            .then_expect_events([checked_out()])
            .state();
        assert_eq!(state.status, CartStatus::CheckedOut { total_cents: 500, at_ms: 1_000 });
        assert_eq!(state.lines.len(), 2, "checkout keeps the lines");
    }

    #[test]
    fn refuses_to_check_out_an_empty_cart() {
        given::<Cart>([]).when(CheckOut).then_expect_rejection(codes::EMPTY_CART);
        given::<Cart>([added("mug", 1, 450), ItemRemoved { sku: "mug".into() }])
            .when(CheckOut)
            .then_expect_rejection(codes::EMPTY_CART);
    }

    #[test]
    fn a_checked_out_cart_refuses_every_change() {
        let history = [added("mug", 2, 100), added("tea", 1, 300), checked_out()];
        for command in [add("mug", 1, 100), RemoveItem { sku: "mug".into() }, CheckOut] {
            given::<Cart>(history.clone()).when(command).then_expect_rejection(codes::ALREADY_CHECKED_OUT);
        }
    }

    #[test]
    fn state_survives_a_snapshot() {
        let cart = given::<Cart>([added("mug", 2, 100), checked_out()]).state().clone();
        assert_eq!(Cart::restore(&cart.snapshot()), Ok(cart));
    }
}
