//! The `ReserveStock` policy (an order placed reserves its lines' stock)
//! and the `StockLevels` read model (each SKU's units on hand and reserved).
//!
//! ```text
//! Order.Placed ──ReserveStock──▶ Inventory(sku).Reserve, one per line
//!                                       │ rejected (insufficient stock)
//!                                       ▼
//!                               Order(order).Cancel
//! Order.Cancelled ──ReserveStock──▶ Inventory(sku).Release, one per line
//! ```
//!
//! A refused reservation cancels the order, and a cancelled order (by the
//! policy or by its customer) releases what its lines hold. A line that
//! holds nothing (its reservation was the one refused) answers the release
//! with a rejection, which needs nothing more.

use crate::inventory::{Inventory, InventoryEvent};
use crate::order::{Order, OrderLine};
use aether_guest::{Envelope, JsonSchema, Policy, ReadModel, Rejected, SendCommand};
use serde::{Deserialize, Serialize};

/// The order events [`ReserveStock`] reacts to (as [`OrderEvent`](crate::OrderEvent) has them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStockEvent {
    Placed {
        lines: Vec<OrderLine>,
        total_cents: u64,
    },
    Cancelled {
        reason: String,
        refund_cents: u64,
        #[serde(default)]
        lines: Vec<OrderLine>,
    },
}

/// The inventory commands [`ReserveStock`] sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReserveCommand {
    Reserve { quantity: u32, order_id: String },
    Release { order_id: String },
}

/// The order commands [`ReserveStock`] sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelCommand {
    Cancel { reason: String },
}

aether_guest::messages! {
    /// What [`ReserveStock`] reacts to.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum ReserveStockEvent {
        Order(OrderStockEvent) of Order,
    }
}

aether_guest::messages! {
    /// What [`ReserveStock`] sends.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum ReserveStockCommand {
        Inventory(ReserveCommand) of Inventory,
        Order(CancelCommand) of Order,
    }
}

/// Whenever an order is placed, reserve each line's units; cancel the order
/// if a reservation is refused; whenever an order is cancelled, release
/// each line's units.
#[derive(Debug)]
pub struct ReserveStock;

impl Policy for ReserveStock {
    const NAME: &'static str = "ReserveStock";
    type Event = ReserveStockEvent;
    type Command = ReserveStockCommand;

    fn react(event: &Envelope<ReserveStockEvent>) -> Vec<SendCommand<ReserveStockCommand>> {
        let order_id = event.actor_id.clone();
        match &event.event {
            ReserveStockEvent::Order(OrderStockEvent::Placed { lines, .. }) => lines
                .iter()
                .map(|line| {
                    let reserve = ReserveCommand::Reserve { quantity: line.quantity, order_id: order_id.clone() };
                    SendCommand::to(&line.sku, reserve)
                })
                .collect(),
            ReserveStockEvent::Order(OrderStockEvent::Cancelled { lines, .. }) => lines
                .iter()
                .map(|line| SendCommand::to(&line.sku, ReserveCommand::Release { order_id: order_id.clone() }))
                .collect(),
        }
    }

    fn rejected(rejected: &Rejected<ReserveStockCommand>) -> Vec<SendCommand<ReserveStockCommand>> {
        match &rejected.sent.command {
            ReserveStockCommand::Inventory(ReserveCommand::Reserve { order_id, .. }) => {
                let reason = format!("{}: {}", rejected.sent.to, rejected.rejection.message);
                vec![SendCommand::to(order_id, CancelCommand::Cancel { reason })]
            }
            // A line that holds nothing has nothing to release.
            ReserveStockCommand::Inventory(ReserveCommand::Release { .. }) => Vec::new(),
            // An order that refuses to be cancelled has shipped or was
            // cancelled already: nothing to undo.
            ReserveStockCommand::Order(_) => Vec::new(),
        }
    }
}

/// One SKU's stock. Key: the SKU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockRow {
    pub on_hand: u32,
    pub reserved: u32,
}

aether_guest::messages! {
    /// What [`StockLevels`] folds: every inventory event.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum StockEvent {
        Inventory(InventoryEvent) of Inventory,
    }
}

/// Units on hand and reserved, per SKU.
#[derive(Debug)]
pub struct StockLevels;

impl ReadModel for StockLevels {
    const NAME: &'static str = "StockLevels";
    type Event = StockEvent;
    type Row = StockRow;

    fn keys(event: &Envelope<StockEvent>) -> Vec<String> {
        vec![event.actor_id.clone()]
    }

    fn fold(_sku: &str, row: Option<StockRow>, event: &Envelope<StockEvent>) -> Option<StockRow> {
        let StockEvent::Inventory(event) = &event.event;
        let mut row = row.unwrap_or_default();
        match event {
            InventoryEvent::Restocked { quantity } => row.on_hand += quantity,
            InventoryEvent::Reserved { quantity, .. } => row.reserved += quantity,
            InventoryEvent::Released { quantity, .. } => row.reserved -= quantity,
        }
        Some(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OrderEvent;
    use crate::codes;
    use aether_guest::Rejection;
    use aether_guest::testing::{policy, read_model};

    fn line(sku: &str, quantity: u32) -> OrderLine {
        OrderLine { sku: sku.into(), quantity, unit_price_cents: 100 }
    }

    fn reserve(sku: &str, quantity: u32) -> SendCommand<ReserveStockCommand> {
        SendCommand::to(sku, ReserveCommand::Reserve { quantity, order_id: "o-1".into() })
    }

    #[test]
    fn a_placed_order_reserves_each_line() {
        policy::<ReserveStock>()
            .given::<Order>(
                "o-1",
                [OrderEvent::Placed { lines: vec![line("mug", 2), line("tea", 1)], total_cents: 300 }],
            )
            .given::<Order>("o-1", [OrderEvent::Paid { amount_cents: 300, at_ms: 1 }])
            .then_expect_commands([reserve("mug", 2), reserve("tea", 1)]);
    }

    #[test]
    fn a_cancelled_order_releases_each_line() {
        let cancelled = OrderEvent::Cancelled {
            reason: "mug: only 1 available".into(),
            refund_cents: 0,
            lines: vec![line("mug", 2), line("tea", 1)],
        };
        let release = |sku: &str| SendCommand::to(sku, ReserveCommand::Release { order_id: "o-1".into() });
        policy::<ReserveStock>()
            .given::<Order>("o-1", [cancelled])
            .then_expect_commands([release("mug"), release("tea")]);
        policy::<ReserveStock>()
            .given_rejected(
                release("mug"),
                Rejection::new(codes::UNKNOWN_RESERVATION, "order o-1 holds no reservation of mug"),
            )
            .then_expect_commands([]);
    }

    #[test]
    fn a_refused_reservation_cancels_the_order() {
        policy::<ReserveStock>()
            .given_rejected(reserve("mug", 2), Rejection::new(codes::INSUFFICIENT_STOCK, "only 1 available"))
            .then_expect_commands([SendCommand::to(
                "o-1",
                CancelCommand::Cancel { reason: "mug: only 1 available".into() },
            )]);
        policy::<ReserveStock>()
            .given_rejected(
                SendCommand::to("o-1", CancelCommand::Cancel { reason: "x".into() }),
                Rejection::new(codes::ALREADY_SHIPPED, "order o-1 has already shipped"),
            )
            .then_expect_commands([]);
    }

    #[test]
    fn stock_levels_follow_restocks_and_reservations() {
        read_model::<StockLevels>()
            .given::<Inventory>(
                "mug",
                [
                    InventoryEvent::Restocked { quantity: 5 },
                    InventoryEvent::Reserved { quantity: 2, order_id: "o-1".into(), at_ms: 0 },
                    InventoryEvent::Reserved { quantity: 1, order_id: "o-2".into(), at_ms: 0 },
                ],
            )
            .given::<Inventory>("tea", [InventoryEvent::Restocked { quantity: 1 }])
            .given::<Inventory>("mug", [InventoryEvent::Released { quantity: 2, order_id: "o-1".into() }])
            .then_expect_rows([
                ("mug", StockRow { on_hand: 5, reserved: 1 }),
                ("tea", StockRow { on_hand: 1, reserved: 0 }),
            ]);
    }
}
