//! Example domain: a shop, with several aggregates in one component.
//!
//! Where `bank` has one aggregate with flat state, `shop` shows that the host
//! is not shaped around one model: three aggregates share a component, and
//! their state uses maps keyed by strings, nested structs, `Option`s and
//! enums, so the codec and the JSON schemas see more than integers.
//!
//! # Layout
//!
//! - [`cart`]: `Cart` (actor id: a cart id) with `AddItem`, `RemoveItem`,
//!   `CheckOut` and events `ItemAdded`, `ItemRemoved`, `CheckedOut`.
//! - [`inventory`]: `Inventory` (actor id: a SKU) with `Restock`, `Reserve`,
//!   `Release` and events `Restocked`, `Reserved`, `Released`.
//! - [`order`]: `Order` (actor id: an order id) with `Place`, `Pay`, `Ship`,
//!   `Cancel` and events `Placed`, `Paid`, `Shipped`, `Cancelled`.
//! - [`stock`]: the `ReserveStock` policy (a placed order reserves its
//!   lines' stock; a refused reservation cancels the order) and the
//!   `StockLevels` read model (units on hand and reserved per SKU).
//! - [`codes`]: the rejection codes of all three.
//!
//! Money is integer cents and quantities are `u32`; there are no floats, and
//! sums that would overflow are rejected rather than wrapped.

pub mod cart;
pub mod inventory;
pub mod order;
pub mod stock;

pub use cart::{Cart, CartCommand, CartEvent};
pub use inventory::{Inventory, InventoryCommand, InventoryEvent};
pub use order::{Order, OrderCommand, OrderEvent};
pub use stock::{ReserveStock, StockLevels, StockRow};

/// Rejection codes, stable for clients. Some are shared by several aggregates.
pub mod codes {
    /// A quantity is zero, or a count or total would overflow (all aggregates).
    pub const INVALID_QUANTITY: &str = "invalid-quantity";
    /// A SKU, order id or tracking number is empty or whitespace (all aggregates).
    pub const BLANK_FIELD: &str = "blank-field";

    /// `Cart`: a SKU is already in the cart at another unit price.
    pub const PRICE_MISMATCH: &str = "price-mismatch";
    /// `Cart`: `RemoveItem` names a SKU that is not in the cart.
    pub const ITEM_NOT_IN_CART: &str = "item-not-in-cart";
    /// `Cart`: `CheckOut` of a cart with no lines.
    pub const EMPTY_CART: &str = "empty-cart";
    /// `Cart`: any command after `CheckedOut`.
    pub const ALREADY_CHECKED_OUT: &str = "already-checked-out";

    /// `Inventory`: `Reserve` asks for more than is available.
    pub const INSUFFICIENT_STOCK: &str = "insufficient-stock";
    /// `Inventory`: the order already holds a reservation of this SKU.
    pub const ALREADY_RESERVED: &str = "already-reserved";
    /// `Inventory`: `Release` names an order that holds no reservation.
    pub const UNKNOWN_RESERVATION: &str = "unknown-reservation";

    /// `Order`: `Place` with no lines.
    pub const NO_LINES: &str = "no-lines";
    /// `Order`: `Place` lists a SKU twice.
    pub const DUPLICATE_SKU: &str = "duplicate-sku";
    /// `Order`: `Place` on an order that was placed.
    pub const ALREADY_PLACED: &str = "already-placed";
    /// `Order`: `Pay`, `Ship` or `Cancel` before `Place`.
    pub const NOT_PLACED: &str = "not-placed";
    /// `Order`: `Pay` with an amount other than the total.
    pub const WRONG_AMOUNT: &str = "wrong-amount";
    /// `Order`: `Pay` on an order that was paid.
    pub const ALREADY_PAID: &str = "already-paid";
    /// `Order`: `Ship` before `Pay`.
    pub const NOT_PAID: &str = "not-paid";
    /// `Order`: `Ship` or `Cancel` after `Shipped`.
    pub const ALREADY_SHIPPED: &str = "already-shipped";
    /// `Order`: any command after `Cancelled`.
    pub const CANCELLED: &str = "cancelled";
}

aether_guest::domain!(
    name: "shop",
    aggregates: [Cart, Inventory, Order],
    policies: [ReserveStock],
    read_models: [StockLevels],
);

#[cfg(test)]
mod tests {
    use super::*;
    use aether_guest::MessageModel;

    fn names(messages: &[MessageModel]) -> Vec<&str> {
        messages.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn the_model_lists_every_aggregate_with_its_messages() {
        let model = describe();
        assert_eq!(model.name, "shop");
        let aggregates: Vec<_> = model.aggregates.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(aggregates, ["Cart", "Inventory", "Order"]);
        let [cart, inventory, order] = &model.aggregates[..] else { unreachable!() };
        assert_eq!(names(&cart.commands), ["AddItem", "RemoveItem", "CheckOut"]);
        assert_eq!(names(&cart.events), ["ItemAdded", "ItemRemoved", "CheckedOut"]);
        assert_eq!(names(&inventory.commands), ["Restock", "Reserve", "Release"]);
        assert_eq!(names(&inventory.events), ["Restocked", "Reserved", "Released"]);
        assert_eq!(names(&order.commands), ["Place", "Pay", "Ship", "Cancel"]);
        assert_eq!(names(&order.events), ["Placed", "Paid", "Shipped", "Cancelled"]);
        let policy = &model.policies[0];
        assert_eq!(
            (policy.reacts_to.clone(), policy.sends.clone()),
            (
                vec!["Order.Placed".to_string(), "Order.Cancelled".to_string()],
                vec!["Inventory.Reserve".to_string(), "Inventory.Release".to_string(), "Order.Cancel".to_string()]
            )
        );
        let stock = &model.read_models[0];
        assert_eq!(stock.consumes, ["Inventory.Restocked", "Inventory.Reserved", "Inventory.Released"]);
    }

    #[test]
    fn schemas_describe_the_richer_payloads() {
        let model = describe();
        let [cart, _, order] = &model.aggregates[..] else { unreachable!() };
        // A unit command has a null payload; a data command names its fields.
        assert!(cart.commands[2].schema.contains(r#""type":"null""#), "{}", cart.commands[2].schema);
        assert!(cart.commands[0].schema.contains("unit_price_cents"), "{}", cart.commands[0].schema);
        // Nested types (a line inside `Place`, the map and enum in the state) travel with their definitions.
        assert!(order.commands[0].schema.contains("OrderLine"), "{}", order.commands[0].schema);
        for needle in ["CartLine", "CartStatus", "additionalProperties"] {
            assert!(cart.state_schema.contains(needle), "{needle} missing from {}", cart.state_schema);
        }
        for needle in ["Payment", "Cancellation", "OrderStatus"] {
            assert!(order.state_schema.contains(needle), "{needle} missing from {}", order.state_schema);
        }
    }
}
