//! A domain component: loaded, checked against the contract and its own
//! model, and ready to create one VM per actor.

use super::bindings::aether::domain::types as wit;
use super::bindings::{DomainHost, DomainHostPre};
use super::engine::AetherEngine;
use super::instance::{GuestFault, GuestInstance, RefusalKind};
use super::policy::PolicyVm;
use super::read_model::ReadModelVm;
use super::sandbox::Sandbox;
use crate::model::{AggregateModel, DomainModel, MessageModel, ModelError, PolicyModel, ReadModelModel};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

/// Why a component cannot be loaded. Each message names the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("not a WebAssembly file: it does not start with the `\\0asm` magic bytes")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build the domain for `wasm32-wasip2` \
         (cargo build --target wasm32-wasip2), which produces a component"
    )]
    CoreModule,
    #[error("the component does not compile: {0}")]
    Compile(String),
    #[error("the component does not fit the aether:domain contract: {0}")]
    Contract(String),
    #[error(
        "the component was built against aether:domain@{found}; this host speaks aether:domain@{expected}: \
         rebuild it against aether-guest {guest} (the version of this host)",
        guest = env!("CARGO_PKG_VERSION")
    )]
    ContractVersion { found: String, expected: &'static str },
    #[error("the component's describe() failed: {0}")]
    Describe(GuestFault),
    #[error(transparent)]
    InvalidModel(#[from] ModelError),
}

/// A loaded domain component. Cloning is cheap and shares the compiled code.
#[derive(Clone)]
pub struct DomainComponent {
    engine: Arc<AetherEngine>,
    pre: DomainHostPre<Sandbox>,
    model: DomainModel,
    hash: Arc<str>,
}

impl std::fmt::Debug for DomainComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainComponent").field("domain", &self.model.name).field("hash", &self.hash).finish()
    }
}

impl DomainComponent {
    /// Loads a component from a `.wasm` file.
    ///
    /// # Errors
    ///
    /// See [`from_bytes`](Self::from_bytes); also if the file cannot be read.
    pub fn from_file(engine: &Arc<AetherEngine>, path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|cause| LoadError::Read { path: path.display().to_string(), cause })?;
        Self::from_bytes(engine, &bytes)
    }

    /// Loads a component: checks it is a component, compiles it, links it
    /// against the host's imports, checks its exports against the contract,
    /// and reads and validates its model.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] naming the problem.
    pub fn from_bytes(engine: &Arc<AetherEngine>, bytes: &[u8]) -> Result<Self, LoadError> {
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule),
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => return Err(LoadError::NotWasm),
        }
        let component = Component::new(engine.engine(), bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        check_contract_version(engine, &component)?;
        let mut linker = Linker::<Sandbox>::new(engine.engine());
        DomainHost::add_to_linker::<Sandbox, HasSelf<Sandbox>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Contract(format!("{e:#}")))?;
        deny_other_imports(engine, &component, &mut linker).map_err(|e| LoadError::Contract(format!("{e:#}")))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| LoadError::Contract(format!("{e:#}")))?;
        let pre = DomainHostPre::new(pre).map_err(|e| LoadError::Contract(format!("{e:#}")))?;
        let hash = hex::encode(Sha256::digest(bytes));
        let mut loaded = Self {
            engine: engine.clone(),
            pre,
            model: DomainModel {
                name: String::new(),
                sdk_version: String::new(),
                aggregates: vec![],
                policies: vec![],
                read_models: vec![],
            },
            hash: hash.into(),
        };
        let mut scratch = loaded.instantiate().map_err(LoadError::Describe)?;
        let described = scratch.describe().map_err(LoadError::Describe)?;
        loaded.model = convert_model(described)?;
        loaded.model.validate()?;
        Ok(loaded)
    }

    /// The component's EventStorming model.
    pub fn model(&self) -> &DomainModel {
        &self.model
    }

    /// SHA-256 of the component's bytes, hex: recorded in every event's provenance.
    pub fn hash(&self) -> &Arc<str> {
        &self.hash
    }

    pub fn engine(&self) -> &Arc<AetherEngine> {
        &self.engine
    }

    /// Creates a fresh VM (not yet bound to an actor).
    ///
    /// # Errors
    ///
    /// [`GuestFault::PoolExhausted`] if every slot of the pool is in use,
    /// [`GuestFault::Instantiate`] if the guest's start-up fails.
    pub(crate) fn instantiate(&self) -> Result<GuestInstance, GuestFault> {
        let config = self.engine.config();
        let mut store = Store::new(self.engine.engine(), Sandbox::new(config.max_memory_bytes));
        store.limiter(|s| s.limiter());
        store.set_epoch_deadline(self.engine.deadline_ticks());
        let bindings = self.pre.instantiate(&mut store).map_err(|e| {
            if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
                GuestFault::PoolExhausted(format!("{e:#}"))
            } else {
                GuestFault::Instantiate(format!("{e:#}"))
            }
        })?;
        Ok(GuestInstance::new(store, bindings, &self.engine))
    }

    /// Creates a VM serving the policy `name`.
    ///
    /// # Errors
    ///
    /// [`GuestFault::Refused`] if the model has no such policy; otherwise as
    /// [`replica`](Self::replica).
    pub fn policy_vm(&self, name: &str) -> Result<PolicyVm, GuestFault> {
        let policy = self.model.policy(name).cloned().ok_or_else(|| {
            unknown(
                "react",
                RefusalKind::UnknownPolicy,
                "policy",
                name,
                self.model.policies.iter().map(|p| p.name.as_str()),
            )
        })?;
        Ok(PolicyVm::new(self.instantiate()?, policy))
    }

    /// Creates a VM serving the read model `name`.
    ///
    /// # Errors
    ///
    /// [`GuestFault::Refused`] if the model has no such read model; otherwise
    /// as [`replica`](Self::replica).
    pub fn read_model_vm(&self, name: &str) -> Result<ReadModelVm, GuestFault> {
        let read_model = self.model.read_model(name).cloned().ok_or_else(|| {
            unknown(
                "fold",
                RefusalKind::UnknownReadModel,
                "read model",
                name,
                self.model.read_models.iter().map(|r| r.name.as_str()),
            )
        })?;
        Ok(ReadModelVm::new(self.instantiate()?, read_model))
    }
}

/// A refusal of a name the model does not have, listing those it has.
fn unknown<'a>(
    call: &'static str,
    kind: RefusalKind,
    what: &str,
    name: &str,
    known: impl Iterator<Item = &'a str>,
) -> GuestFault {
    let known: Vec<_> = known.collect();
    let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
    GuestFault::Refused { call, kind, reason: format!("the model has no {what} `{name}` (it has: {known})") }
}

/// The version of the `aether:domain` contract this host speaks: the
/// `package` line of `wit/aether.wit`, which both bindings are generated from.
pub fn contract_version() -> &'static str {
    const WIT: &str = include_str!("../../../wit/aether.wit");
    WIT.lines()
        .find_map(|line| line.trim().strip_prefix("package aether:domain@"))
        .and_then(|rest| rest.strip_suffix(';'))
        .expect("wit/aether.wit declares `package aether:domain@<version>;`")
}

/// Refuses a component built against another version of the contract with
/// that said, rather than with the type mismatch it would otherwise meet.
fn check_contract_version(engine: &AetherEngine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let names =
        ty.imports(engine.engine()).map(|(name, _)| name).chain(ty.exports(engine.engine()).map(|(name, _)| name));
    for name in names {
        if let Some((_, found)) = name.strip_prefix("aether:domain/").and_then(|rest| rest.split_once('@'))
            && found != contract_version()
        {
            return Err(LoadError::ContractVersion { found: found.to_string(), expected: contract_version() });
        }
    }
    Ok(())
}

/// Links every import the host does not grant (files, sockets, anything
/// else) to a trap that names it, so a guest that reaches for it fails loudly
/// instead of failing to load.
///
/// Wasmtime's `define_unknown_imports_as_traps` would also stub granted
/// interfaces imported at another semver-compatible version (a guest built
/// against `wasi:io@0.2.6` when the host has 0.2.12), shadowing the real
/// definitions; so granted interfaces are matched here by name without version.
fn deny_other_imports(
    engine: &AetherEngine,
    component: &Component,
    linker: &mut Linker<Sandbox>,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    const GRANTED: &[&str] = &[
        "aether:domain/",
        "wasi:io/",
        "wasi:cli/",
        "wasi:clocks/wall-clock",
        "wasi:clocks/monotonic-clock",
        "wasi:random/",
    ];
    let ty = component.component_type();
    for (name, item) in ty.imports(engine.engine()) {
        if GRANTED.iter().any(|g| name.starts_with(g)) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            let denied = name.to_string();
            linker.root().func_new(name, move |_, _, _, _| {
                Err(wasmtime::format_err!("denied import: `{denied}` is not available to guests"))
            })?;
            continue;
        };
        let mut linked = linker.instance(name)?;
        for (export, item) in instance.exports(engine.engine()) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let denied = format!("{name}#{export}");
                    linked.func_new(export, move |_, _, _, _| {
                        Err(wasmtime::format_err!("denied import: `{denied}` is not available to guests"))
                    })?;
                }
                ComponentItem::Resource(_) => {
                    // Resources a denied interface shares with granted ones
                    // (`use wasi:io/streams.{input-stream}`) must be the very
                    // same types; its own resources can never be created.
                    use super::bindings::wasi::io::{error, poll, streams};
                    use wasmtime::component::ResourceType;
                    let ty = match export {
                        "input-stream" => ResourceType::host::<streams::InputStream>(),
                        "output-stream" => ResourceType::host::<streams::OutputStream>(),
                        "pollable" => ResourceType::host::<poll::Pollable>(),
                        "error" => ResourceType::host::<error::Error>(),
                        _ => ResourceType::host::<()>(),
                    };
                    linked.resource(export, ty, |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn convert_model(m: wit::DomainModel) -> Result<DomainModel, ModelError> {
    let domain = m.name.clone();
    let schema = |owner: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| ModelError {
            domain: domain.clone(),
            problem: format!("the schema of `{owner}` is not JSON: {e}"),
        })
    };
    let mut aggregates = Vec::new();
    for a in m.aggregates {
        let messages = |list: Vec<wit::MessageType>| -> Result<Vec<MessageModel>, ModelError> {
            list.into_iter()
                .map(|t| {
                    Ok(MessageModel { schema: schema(&format!("{}.{}", a.name, t.name), &t.schema)?, name: t.name })
                })
                .collect()
        };
        aggregates.push(AggregateModel {
            commands: messages(a.commands)?,
            events: messages(a.events)?,
            state_schema: schema(&a.name, &a.state_schema)?,
            name: a.name,
        });
    }
    Ok(DomainModel {
        name: m.name,
        sdk_version: m.sdk_version,
        aggregates,
        policies: m
            .policies
            .into_iter()
            .map(|p| PolicyModel { name: p.name, reacts_to: p.reacts_to, sends: p.sends })
            .collect(),
        read_models: m
            .read_models
            .into_iter()
            .map(|r| {
                Ok(ReadModelModel {
                    row_schema: schema(&r.name, &r.row_schema)?,
                    name: r.name,
                    consumes: r.consumes,
                    indexes: r.indexes,
                })
            })
            .collect::<Result<_, ModelError>>()?,
    })
}
