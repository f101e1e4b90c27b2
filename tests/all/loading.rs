//! Bad components are refused with a message that names the problem.

use crate::support;
use aether_host::{AetherEngine, DomainComponent, EngineConfig, LoadError};
use std::sync::Arc;

fn engine() -> Arc<AetherEngine> {
    AetherEngine::new(EngineConfig::default().with_max_instances(16)).unwrap()
}

fn load(bytes: &[u8]) -> LoadError {
    DomainComponent::from_bytes(&engine(), bytes).expect_err("the component must be refused")
}

#[test]
fn bytes_that_are_not_wasm() {
    let err = load(b"#!/bin/sh\necho hello\n");
    assert!(matches!(err, LoadError::NotWasm), "{err}");
    assert!(err.to_string().contains("not a WebAssembly file"));
    assert!(matches!(load(b""), LoadError::NotWasm));
}

#[test]
fn a_core_module_instead_of_a_component() {
    let module = wat::parse_str("(module (func (export \"handle\")))").unwrap();
    let err = load(&module);
    assert!(matches!(err, LoadError::CoreModule), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "the hint says how to build a component: {err}");
}

#[test]
fn truncated_wasm() {
    let bank = std::fs::read(support::component("examples/bank")).unwrap();
    let err = load(&bank[..bank.len() / 2]);
    assert!(matches!(err, LoadError::Compile(_)), "{err}");
}

#[test]
fn a_component_without_the_contract_exports() {
    let err = load(&wat::parse_str("(component)").unwrap());
    assert!(matches!(err, LoadError::Contract(_)), "{err}");
    assert!(err.to_string().contains("aether:domain/aggregate"), "names the missing export: {err}");
}

#[test]
fn a_component_with_mistyped_exports() {
    let wat = r#"
        (component
          (core module $m
            (func (export "describe") (result i32) i32.const 0)
            (memory (export "memory") 1))
          (core instance $i (instantiate $m))
          (func $describe (result u32) (canon lift (core func $i "describe")))
          (instance $agg (export "describe" (func $describe)))
          (export "aether:domain/aggregate@VERSION" (instance $agg)))
    "#
    .replace("VERSION", aether_host::wasm::contract_version());
    let err = load(&wat::parse_str(wat).unwrap());
    assert!(matches!(err, LoadError::Contract(_)), "{err}");
    assert!(err.to_string().contains("describe") || err.to_string().contains("init"), "names the export: {err}");
}

#[test]
fn a_component_built_against_another_contract_version_is_told_to_rebuild() {
    let wat = r#"
        (component
          (instance $agg)
          (export "aether:domain/aggregate@0.1.0" (instance $agg)))
    "#;
    let err = load(&wat::parse_str(wat).unwrap());
    assert!(matches!(&err, LoadError::ContractVersion { found, .. } if found == "0.1.0"), "{err}");
    let message = err.to_string();
    assert!(message.contains("aether:domain@0.1.0") && message.contains("rebuild"), "{message}");
}

/// A real component built with the aether-guest of contract 0.4.0 (the bank
/// example, kept as built): it must be refused with the "rebuild" message,
/// not half-loaded, whatever it exports.
#[test]
fn a_component_built_against_the_previous_contract_is_told_to_rebuild() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/bank-contract-0.4.0.wasm")).unwrap();
    let err = load(&bytes);
    assert!(matches!(&err, LoadError::ContractVersion { found, .. } if found == "0.4.0"), "{err}");
    let message = err.to_string();
    assert!(message.contains("rebuild it against aether-guest"), "{message}");
    assert!(message.contains(aether_host::wasm::contract_version()), "names the contract it needs: {message}");
}

#[test]
fn a_component_with_an_invalid_model() {
    let bytes = std::fs::read(support::component("tests/guests/bad-model")).unwrap();
    let err = load(&bytes);
    assert!(matches!(err, LoadError::InvalidModel(_)), "{err}");
    assert!(err.to_string().contains("\"Not.A.Name\" is not a name"), "{err}");
}

#[test]
fn the_examples_load_and_describe_themselves() {
    let bank = DomainComponent::from_file(&engine(), &support::component("examples/bank")).unwrap();
    let account = bank.model().aggregate("Account").expect("Account");
    let commands: Vec<_> = account.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(commands, ["Open", "Deposit", "Withdraw", "Close", "Debit", "Credit", "Refund"]);
    let events: Vec<_> = account.events.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(events, ["Opened", "Deposited", "Withdrawn", "Closed", "Debited", "Credited", "Refunded"]);
    assert_eq!(account.commands[1].schema["properties"]["amount"]["type"], "integer");
    let saga = bank.model().policy("TransferSaga").expect("TransferSaga");
    assert!(saga.may_send("Account", "Debit") && !saga.may_send("Account", "Withdraw"), "{saga:?}");
    let owners = bank.model().read_model("AccountsByOwner").expect("AccountsByOwner");
    assert_eq!(owners.row_schema["properties"]["balance"]["type"], "integer");
}
