//! The shop component as the host runs it: several aggregates in one
//! component, each actor in its own VM.

use aether_testkit::TestKit;

async fn kit() -> TestKit {
    TestKit::for_crate(env!("CARGO_MANIFEST_DIR")).await
}

#[tokio::test]
async fn the_model_lists_every_aggregate() {
    let kit = kit().await;
    let model = kit.runtime().model();
    let names: Vec<_> = model.aggregates.iter().map(|a| a.name.clone()).collect();
    assert_eq!(names, ["Cart", "Inventory", "Order"]);
}

#[tokio::test]
async fn a_cart_checks_out_at_the_recorded_time() {
    use shop::{CartCommand::*, CartEvent::*};
    let kit = kit().await;
    kit.given::<shop::CartEvent>("Cart", "c-1", [])
        .await
        .when(CheckOut)
        .await
        .then_expect_rejection(shop::codes::EMPTY_CART);
    let then = kit
        .given("Cart", "c-2", [ItemAdded { sku: "tea".into(), quantity: 2, unit_price_cents: 350 }])
        .await
        .when(CheckOut)
        .await;
    let Ok(aether_testkit::CommandOutcome::Accepted { events, .. }) = then.outcome() else {
        panic!("{:?}", then.outcome())
    };
    let decoded: Vec<shop::CartEvent> = aether_testkit::decode_events(events);
    let CheckedOut { total_cents, at_ms } = decoded[0] else { panic!("{decoded:?}") };
    assert_eq!(total_cents, 700);
    assert_eq!(at_ms, events[0].provenance.timestamp_ms, "the guest's clock is the command's recorded time");
}

#[tokio::test]
async fn inventory_reserves_only_what_is_on_hand() {
    use shop::{InventoryCommand::*, InventoryEvent::*};
    let kit = kit().await;
    kit.given("Inventory", "tea", [Restocked { quantity: 3 }])
        .await
        .when(Reserve { quantity: 4, order_id: "o-1".into() })
        .await
        .then_expect_rejection(shop::codes::INSUFFICIENT_STOCK);
    let then = kit
        .given::<shop::InventoryEvent>("Inventory", "tea", [])
        .await
        .when(Reserve { quantity: 2, order_id: "o-1".into() })
        .await;
    assert!(matches!(then.outcome(), Ok(aether_testkit::CommandOutcome::Accepted { .. })), "{:?}", then.outcome());
    let state: shop::Inventory = then.state().await;
    assert_eq!(state.reservations["o-1"].quantity, 2);
    kit.given::<shop::InventoryEvent>("Inventory", "tea", [])
        .await
        .when(Release { order_id: "o-1".into() })
        .await
        .then_expect_events([Released { quantity: 2, order_id: "o-1".into() }]);
}

#[tokio::test]
async fn a_placed_order_reserves_stock_through_the_component() {
    use aether_guest::SendCommand;
    use shop::order::OrderLine;
    use shop::stock::{CancelCommand, ReserveCommand, ReserveStockCommand};
    let kit = kit().await;
    let line = |sku: &str, quantity| OrderLine { sku: sku.into(), quantity, unit_price_cents: 100 };
    let reserve =
        |sku: &str, quantity| SendCommand::to(sku, ReserveCommand::Reserve { quantity, order_id: "o-1".into() });
    kit.policy("ReserveStock")
        .given(
            "Order",
            "o-1",
            [shop::OrderEvent::Placed { lines: vec![line("mug", 2), line("tea", 1)], total_cents: 300 }],
        )
        .await
        .then_expect_commands::<ReserveStockCommand>([reserve("mug", 2), reserve("tea", 1)]);
    kit.policy("ReserveStock")
        .given_rejected(reserve("mug", 2), shop::codes::INSUFFICIENT_STOCK, "only 1 available")
        .then_expect_commands::<ReserveStockCommand>([SendCommand::to(
        "o-1",
        CancelCommand::Cancel { reason: "mug: only 1 available".into() },
    )]);
}

#[tokio::test]
async fn stock_levels_fold_through_the_component() {
    use shop::InventoryEvent::*;
    use shop::StockRow;
    let kit = kit().await;
    kit.read_model("StockLevels")
        .given(
            "Inventory",
            "mug",
            [Restocked { quantity: 5 }, Reserved { quantity: 2, order_id: "o-1".into(), at_ms: 0 }],
        )
        .await
        .given("Inventory", "mug", [Released { quantity: 2, order_id: "o-1".into() }])
        .await
        .then_expect_rows([("mug", StockRow { on_hand: 5, reserved: 0 })]);
}
