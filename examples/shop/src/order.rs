//! The `Order` aggregate: a small state machine from placement to shipment.
//!
//! ```text
//! New --Place--> Placed --Pay--> Paid --Ship--> Shipped
//!                  |               |
//!                  +----Cancel-----+--> Cancelled
//! ```
//!
//! Payment must match the total exactly, so a paid order never owes or is
//! owed money; cancelling a paid order records the refund it owes instead.
//! A shipped order cannot be cancelled: the goods have left.

use crate::codes;
use aether_guest::{Aggregate, Context, JsonSchema, Rejection};
use serde::{Deserialize, Serialize};

/// An order. Its state is `{ status, lines, total_cents, payment, tracking, cancellation }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Order {
    pub status: OrderStatus,
    /// The lines as placed, in the customer's order.
    pub lines: Vec<OrderLine>,
    pub total_cents: u64,
    pub payment: Option<Payment>,
    /// The carrier's tracking number, once shipped.
    pub tracking: Option<String>,
    pub cancellation: Option<Cancellation>,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OrderStatus {
    #[default]
    New,
    Placed,
    Paid,
    Shipped,
    Cancelled,
}

/// One SKU in an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_cents: u64,
}

/// How an order was paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Payment {
    pub amount_cents: u64,
    pub at_ms: u64,
}

/// Why an order was cancelled and what it owes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Cancellation {
    pub reason: String,
    pub refund_cents: u64,
}

/// What can be asked of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OrderCommand {
    /// Places the order with at least one line, each SKU at most once.
    Place { lines: Vec<OrderLine> },
    /// Pays a placed order; the amount must equal the total.
    Pay { amount_cents: u64 },
    /// Ships a paid order.
    Ship { tracking: String },
    /// Cancels an order that has not shipped.
    Cancel { reason: String },
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OrderEvent {
    Placed {
        lines: Vec<OrderLine>,
        total_cents: u64,
    },
    Paid {
        amount_cents: u64,
        at_ms: u64,
    },
    Shipped {
        tracking: String,
    },
    /// `lines`: what the order held in stock, to release (absent from
    /// orders cancelled before the shop released stock: read as none).
    Cancelled {
        reason: String,
        refund_cents: u64,
        #[serde(default)]
        lines: Vec<OrderLine>,
    },
}

/// Checks placed lines and sums them.
fn total_of(lines: &[OrderLine]) -> Result<u64, Rejection> {
    if lines.is_empty() {
        return Err(Rejection::new(codes::NO_LINES, "an order needs at least one line"));
    }
    let mut total: u64 = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.sku.trim().is_empty() {
            return Err(Rejection::new(codes::BLANK_FIELD, format!("line {i}: the sku must not be blank")));
        }
        if line.quantity == 0 {
            return Err(Rejection::new(codes::INVALID_QUANTITY, format!("line {i} ({}): order at least 1", line.sku)));
        }
        if lines[..i].iter().any(|earlier| earlier.sku == line.sku) {
            return Err(Rejection::new(
                codes::DUPLICATE_SKU,
                format!("{} appears more than once; merge its lines", line.sku),
            ));
        }
        total = u64::from(line.quantity)
            .checked_mul(line.unit_price_cents)
            .and_then(|cents| total.checked_add(cents))
            .ok_or_else(|| Rejection::new(codes::INVALID_QUANTITY, "the order total would overflow"))?;
    }
    Ok(total)
}

impl Aggregate for Order {
    const NAME: &'static str = "Order";
    type Command = OrderCommand;
    type Event = OrderEvent;

    fn handle(&self, ctx: &Context, command: OrderCommand) -> Result<Vec<OrderEvent>, Rejection> {
        use OrderCommand::*;
        use OrderStatus as S;
        let id = &ctx.actor_id;
        let reject = |code: &str, why: &str| Err(Rejection::new(code, format!("order {id} {why}")));
        match (self.status, command) {
            (S::Cancelled, _) => reject(codes::CANCELLED, "was cancelled"),
            (S::New, Place { lines }) => {
                let total_cents = total_of(&lines)?;
                Ok(vec![OrderEvent::Placed { lines, total_cents }])
            }
            (_, Place { .. }) => reject(codes::ALREADY_PLACED, "was already placed"),
            (S::New, _) => reject(codes::NOT_PLACED, "has not been placed"),
            (S::Placed, Pay { amount_cents }) if amount_cents != self.total_cents => Err(Rejection::new(
                codes::WRONG_AMOUNT,
                format!("order {id} totals {} cents; {amount_cents} was offered", self.total_cents),
            )),
            (S::Placed, Pay { amount_cents }) => Ok(vec![OrderEvent::Paid { amount_cents, at_ms: ctx.timestamp_ms }]),
            (_, Pay { .. }) => reject(codes::ALREADY_PAID, "was already paid"),
            (S::Placed, Ship { .. }) => reject(codes::NOT_PAID, "must be paid before it ships"),
            (S::Paid, Ship { tracking }) if tracking.trim().is_empty() => {
                Err(Rejection::new(codes::BLANK_FIELD, "the tracking number must not be blank"))
            }
            (S::Paid, Ship { tracking }) => Ok(vec![OrderEvent::Shipped { tracking }]),
            (S::Shipped, _) => reject(codes::ALREADY_SHIPPED, "has already shipped"),
            (S::Placed | S::Paid, Cancel { reason }) => {
                let refund_cents = self.payment.map_or(0, |p| p.amount_cents);
                Ok(vec![OrderEvent::Cancelled { reason, refund_cents, lines: self.lines.clone() }])
            }
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { lines, total_cents } => {
                self.status = OrderStatus::Placed;
                self.lines.clone_from(lines);
                self.total_cents = *total_cents;
            }
            OrderEvent::Paid { amount_cents, at_ms } => {
                self.status = OrderStatus::Paid;
                self.payment = Some(Payment { amount_cents: *amount_cents, at_ms: *at_ms });
            }
            OrderEvent::Shipped { tracking } => {
                self.status = OrderStatus::Shipped;
                self.tracking = Some(tracking.clone());
            }
            OrderEvent::Cancelled { reason, refund_cents, .. } => {
                self.status = OrderStatus::Cancelled;
                self.cancellation = Some(Cancellation { reason: reason.clone(), refund_cents: *refund_cents });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderCommand::*;
    use OrderEvent::*;
    use aether_guest::testing::given;

    fn line(sku: &str, quantity: u32, unit_price_cents: u64) -> OrderLine {
        OrderLine { sku: sku.into(), quantity, unit_price_cents }
    }

    fn lines() -> Vec<OrderLine> {
        vec![line("mug", 2, 450), line("tea", 1, 300)]
    }

    fn placed() -> OrderEvent {
        Placed { lines: lines(), total_cents: 1_200 }
    }

    fn paid() -> OrderEvent {
        Paid { amount_cents: 1_200, at_ms: 7 }
    }

    fn shipped() -> OrderEvent {
        Shipped { tracking: "1Z999".into() }
    }

    fn cancel() -> OrderCommand {
        Cancel { reason: "changed my mind".into() }
    }

    #[test]
    fn places_once_with_the_total_of_its_lines() {
        let state = given::<Order>([])
            .when(Place { lines: vec![line("mug", 2, 450), line("tea", 1, 300)] })
            .then_expect_events([placed()])
            .state();
        assert_eq!((state.status, state.total_cents, state.lines.len()), (OrderStatus::Placed, 1_200, 2));
        for history in [vec![placed()], vec![placed(), paid()], vec![placed(), paid(), shipped()]] {
            given::<Order>(history)
                .when(Place { lines: vec![line("mug", 1, 1)] })
                .then_expect_rejection(codes::ALREADY_PLACED);
        }
    }

    #[test]
    fn refuses_bad_lines() {
        let place = |lines| given::<Order>([]).when(Place { lines });
        place(vec![]).then_expect_rejection(codes::NO_LINES);
        place(vec![line("mug", 0, 450)]).then_expect_rejection(codes::INVALID_QUANTITY);
        place(vec![line("", 1, 450)]).then_expect_rejection(codes::BLANK_FIELD);
        place(vec![line("mug", 1, 450), line("mug", 2, 450)]).then_expect_rejection(codes::DUPLICATE_SKU);
        place(vec![line("gold", 2, u64::MAX)]).then_expect_rejection(codes::INVALID_QUANTITY);
        place(vec![line("gold", 1, u64::MAX), line("mug", 1, 1)]).then_expect_rejection(codes::INVALID_QUANTITY);
    }

    #[test]
    fn a_new_order_must_be_placed_first() {
        for command in [Pay { amount_cents: 0 }, Ship { tracking: "1Z999".into() }, cancel()] {
            given::<Order>([]).when(command).then_expect_rejection(codes::NOT_PLACED);
        }
    }

    #[test]
    fn pays_the_exact_total_once() {
        let ctx = Context { timestamp_ms: 7, ..Context::default() };
        let state = given::<Order>([placed()])
            .with_context(ctx)
            .when(Pay { amount_cents: 1_200 })
            .then_expect_events([paid()])
            .state();
        assert_eq!(state.payment, Some(Payment { amount_cents: 1_200, at_ms: 7 }));
        given::<Order>([placed()]).when(Pay { amount_cents: 1_199 }).then_expect_rejection(codes::WRONG_AMOUNT);
        given::<Order>([placed(), paid()]).when(Pay { amount_cents: 1_200 }).then_expect_rejection(codes::ALREADY_PAID);
        given::<Order>([placed(), paid(), shipped()])
            .when(Pay { amount_cents: 1_200 })
            .then_expect_rejection(codes::ALREADY_PAID);
    }

    #[test]
    fn ships_only_paid_orders_with_a_tracking_number() {
        let state = given::<Order>([placed(), paid()])
            .when(Ship { tracking: "1Z999".into() })
            .then_expect_events([shipped()])
            .state();
        assert_eq!((state.status, state.tracking.as_deref()), (OrderStatus::Shipped, Some("1Z999")));
        given::<Order>([placed()]).when(Ship { tracking: "1Z999".into() }).then_expect_rejection(codes::NOT_PAID);
        given::<Order>([placed(), paid()])
            .when(Ship { tracking: " ".into() })
            .then_expect_rejection(codes::BLANK_FIELD);
        given::<Order>([placed(), paid(), shipped()])
            .when(Ship { tracking: "1Z000".into() })
            .then_expect_rejection(codes::ALREADY_SHIPPED);
    }

    #[test]
    fn cancels_unshipped_orders_and_refunds_what_was_paid() {
        let state = given::<Order>([placed()])
            .when(cancel())
            .then_expect_events([Cancelled { reason: "changed my mind".into(), refund_cents: 0, lines: lines() }])
            .state();
        assert_eq!(state.status, OrderStatus::Cancelled);
        let state = given::<Order>([placed(), paid()])
            .when(cancel())
            .then_expect_events([Cancelled { reason: "changed my mind".into(), refund_cents: 1_200, lines: lines() }])
            .state();
        assert_eq!(state.cancellation, Some(Cancellation { reason: "changed my mind".into(), refund_cents: 1_200 }));
        given::<Order>([placed(), paid(), shipped()]).when(cancel()).then_expect_rejection(codes::ALREADY_SHIPPED);
    }

    #[test]
    fn a_cancelled_order_refuses_everything() {
        let cancelled = Cancelled { reason: "changed my mind".into(), refund_cents: 0, lines: lines() };
        let commands = [
            Place { lines: vec![line("mug", 1, 1)] },
            Pay { amount_cents: 1_200 },
            Ship { tracking: "1Z999".into() },
            cancel(),
        ];
        for command in commands {
            given::<Order>([placed(), cancelled.clone()]).when(command).then_expect_rejection(codes::CANCELLED);
        }
    }

    #[test]
    fn state_survives_a_snapshot() {
        let order = given::<Order>([placed(), paid(), shipped()]).state().clone();
        assert_eq!(Order::restore(&order.snapshot()), Ok(order));
    }
}
