//! The `Inventory` aggregate: the stock of one SKU (the actor id is the SKU)
//! and the units held back for orders.
//!
//! Reserving does not take units off the shelf; it holds them for an order
//! until they are released, so `on_hand` counts everything in the warehouse
//! and `available` is what is left to promise. Each order holds at most one
//! reservation per SKU, which makes `Release { order_id }` unambiguous.

use crate::codes;
use aether_guest::{Aggregate, Context, JsonSchema, Rejection};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The stock of one SKU. Its state is `{ on_hand, reservations: { order_id: { quantity, at_ms } } }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Inventory {
    /// Units in the warehouse, reserved or not.
    pub on_hand: u32,
    /// Units held for orders, keyed by order id.
    pub reservations: BTreeMap<String, Reservation>,
}

/// Units held for one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reservation {
    pub quantity: u32,
    /// When the reservation was made, milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// What can be asked of a SKU's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InventoryCommand {
    /// Puts units on the shelf.
    Restock { quantity: u32 },
    /// Holds available units for an order.
    Reserve { quantity: u32, order_id: String },
    /// Gives an order's units back to the available stock.
    Release { order_id: String },
}

/// What happened to a SKU's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum InventoryEvent {
    Restocked { quantity: u32 },
    Reserved { quantity: u32, order_id: String, at_ms: u64 },
    Released { quantity: u32, order_id: String },
}

impl Inventory {
    /// Units held for orders.
    pub fn reserved(&self) -> u32 {
        // `Reserve` never holds more than `on_hand`, so the sum fits.
        self.reservations.values().map(|r| r.quantity).sum()
    }

    /// Units that can still be reserved.
    pub fn available(&self) -> u32 {
        self.on_hand - self.reserved()
    }
}

impl Aggregate for Inventory {
    const NAME: &'static str = "Inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;

    fn handle(&self, ctx: &Context, command: InventoryCommand) -> Result<Vec<InventoryEvent>, Rejection> {
        use InventoryCommand::*;
        let sku = &ctx.actor_id;
        match command {
            Restock { quantity: 0 } | Reserve { quantity: 0, .. } => {
                Err(Rejection::new(codes::INVALID_QUANTITY, "the quantity must be at least 1"))
            }
            Restock { quantity } => match self.on_hand.checked_add(quantity) {
                Some(_) => Ok(vec![InventoryEvent::Restocked { quantity }]),
                None => Err(Rejection::new(codes::INVALID_QUANTITY, format!("the stock of {sku} would overflow"))),
            },
            Reserve { order_id, .. } | Release { order_id } if order_id.trim().is_empty() => {
                Err(Rejection::new(codes::BLANK_FIELD, "the order id must not be blank"))
            }
            Reserve { order_id, .. } if self.reservations.contains_key(&order_id) => Err(Rejection::new(
                codes::ALREADY_RESERVED,
                format!("order {order_id} already holds {sku}; release it before reserving again"),
            )),
            Reserve { quantity, .. } if quantity > self.available() => Err(Rejection::new(
                codes::INSUFFICIENT_STOCK,
                format!("cannot reserve {quantity} of {sku}: {} available", self.available()),
            )),
            Reserve { quantity, order_id } => {
                Ok(vec![InventoryEvent::Reserved { quantity, order_id, at_ms: ctx.timestamp_ms }])
            }
            Release { order_id } => match self.reservations.get(&order_id) {
                Some(r) => Ok(vec![InventoryEvent::Released { quantity: r.quantity, order_id }]),
                None => Err(Rejection::new(
                    codes::UNKNOWN_RESERVATION,
                    format!("order {order_id} holds no reservation of {sku}"),
                )),
            },
        }
    }

    fn apply(&mut self, event: &InventoryEvent) {
        match event {
            InventoryEvent::Restocked { quantity } => self.on_hand += quantity,
            InventoryEvent::Reserved { quantity, order_id, at_ms } => {
                self.reservations.insert(order_id.clone(), Reservation { quantity: *quantity, at_ms: *at_ms });
            }
            InventoryEvent::Released { order_id, .. } => {
                self.reservations.remove(order_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InventoryCommand::*;
    use InventoryEvent::*;
    use aether_guest::testing::given;

    fn reserved(quantity: u32, order_id: &str) -> InventoryEvent {
        Reserved { quantity, order_id: order_id.into(), at_ms: 0 }
    }

    fn reserve(quantity: u32, order_id: &str) -> InventoryCommand {
        Reserve { quantity, order_id: order_id.into() }
    }

    fn release(order_id: &str) -> InventoryCommand {
        Release { order_id: order_id.into() }
    }

    #[test]
    fn restocks_add_to_the_shelf() {
        let state = given::<Inventory>([Restocked { quantity: 3 }])
            .when(Restock { quantity: 4 })
            .then_expect_events([Restocked { quantity: 4 }])
            .state();
        assert_eq!((state.on_hand, state.available()), (7, 7));
    }

    #[test]
    fn refuses_zero_and_overflowing_quantities() {
        given::<Inventory>([]).when(Restock { quantity: 0 }).then_expect_rejection(codes::INVALID_QUANTITY);
        given::<Inventory>([Restocked { quantity: 5 }])
            .when(reserve(0, "o-1"))
            .then_expect_rejection(codes::INVALID_QUANTITY);
        given::<Inventory>([Restocked { quantity: u32::MAX }])
            .when(Restock { quantity: 1 })
            .then_expect_rejection(codes::INVALID_QUANTITY);
    }

    #[test]
    fn reserves_available_units_at_the_command_time() {
        let ctx = Context { actor_id: "mug".into(), timestamp_ms: 42, ..Context::default() };
        let state = given::<Inventory>([Restocked { quantity: 5 }, reserved(2, "o-1")])
            .with_context(ctx)
            .when(reserve(3, "o-2"))
            .then_expect_events([Reserved { quantity: 3, order_id: "o-2".into(), at_ms: 42 }])
            .state();
        assert_eq!((state.on_hand, state.reserved(), state.available()), (5, 5, 0));
        assert_eq!(state.reservations["o-2"], Reservation { quantity: 3, at_ms: 42 });
    }

    #[test]
    fn refuses_to_reserve_more_than_available() {
        given::<Inventory>([]).when(reserve(1, "o-1")).then_expect_rejection(codes::INSUFFICIENT_STOCK);
        given::<Inventory>([Restocked { quantity: 5 }, reserved(4, "o-1")])
            .when(reserve(2, "o-2"))
            .then_expect_rejection(codes::INSUFFICIENT_STOCK);
    }

    #[test]
    fn an_order_holds_one_reservation_per_sku() {
        given::<Inventory>([Restocked { quantity: 5 }, reserved(1, "o-1")])
            .when(reserve(1, "o-1"))
            .then_expect_rejection(codes::ALREADY_RESERVED);
    }

    #[test]
    fn refuses_blank_order_ids() {
        given::<Inventory>([Restocked { quantity: 5 }]).when(reserve(1, "")).then_expect_rejection(codes::BLANK_FIELD);
        given::<Inventory>([Restocked { quantity: 5 }]).when(release(" ")).then_expect_rejection(codes::BLANK_FIELD);
    }

    #[test]
    fn releases_give_units_back() {
        let state = given::<Inventory>([Restocked { quantity: 5 }, reserved(4, "o-1")])
            .when(release("o-1"))
            .then_expect_events([Released { quantity: 4, order_id: "o-1".into() }])
            .state();
        assert!(state.reservations.is_empty());
        assert_eq!(state.available(), 5);
        // Released units can be reserved again, even by the same order.
        given::<Inventory>([
            Restocked { quantity: 5 },
            reserved(4, "o-1"),
            Released { quantity: 4, order_id: "o-1".into() },
        ])
        .when(reserve(5, "o-1"))
        .then_expect_events([reserved(5, "o-1")]);
    }

    #[test]
    fn refuses_to_release_an_unknown_reservation() {
        given::<Inventory>([Restocked { quantity: 5 }])
            .when(release("o-1"))
            .then_expect_rejection(codes::UNKNOWN_RESERVATION);
        given::<Inventory>([
            Restocked { quantity: 5 },
            reserved(1, "o-1"),
            Released { quantity: 1, order_id: "o-1".into() },
        ])
        .when(release("o-1"))
        .then_expect_rejection(codes::UNKNOWN_RESERVATION);
    }
}
