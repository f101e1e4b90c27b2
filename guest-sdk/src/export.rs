//! The guest side of the `aggregate` interface: one actor per instance,
//! dispatched to the domain's aggregates, and the model. [`domain!`](crate::domain)
//! wires these functions (and those of [`dispatch`](crate::dispatch)) to the
//! bindings generated from `wit/`.

use crate::bindings::aether::domain::types as wit;
use crate::codec;
use crate::dispatch::{PolicyRegistration, ReadModelRegistration};
use crate::model::{AggregateModel, DomainModel, variant_names};
use crate::{Aggregate, Context};
use std::cell::RefCell;

/// How one aggregate type is registered in a domain.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    name: &'static str,
    create: fn(actor_id: String) -> Box<dyn Actor>,
    model: fn() -> AggregateModel,
}

impl Registration {
    pub fn of<A: Aggregate>() -> Self {
        Self {
            name: A::NAME,
            create: |actor_id| {
                Box::new(Slot::<A> { state: A::default(), ctx: Context { actor_id, ..Context::default() } })
            },
            model: AggregateModel::of::<A>,
        }
    }
}

/// The model of a domain made of registered aggregates, policies and read models.
pub fn model(
    name: &str,
    aggregates: &[Registration],
    policies: &[PolicyRegistration],
    read_models: &[ReadModelRegistration],
) -> DomainModel {
    DomainModel {
        name: name.to_string(),
        sdk_version: crate::SDK_VERSION.to_string(),
        aggregates: aggregates.iter().map(|r| (r.model)()).collect(),
        policies: policies.iter().map(|r| (r.model)()).collect(),
        read_models: read_models.iter().map(|r| (r.model)()).collect(),
    }
}

/// An aggregate with its types erased, as the exports drive it.
pub trait Actor {
    /// Folds a batch packed as the contract's `packed-events` (see [`codec::pack`]).
    fn apply(&mut self, packed: &[u8]) -> Result<(), wit::ApplyError>;
    /// Decides a command and, when it is accepted, folds the events into the
    /// state (tentatively: the host discards the instance if it cannot append them).
    fn handle(
        &mut self,
        ctx: wit::CommandContext,
        command: wit::Message,
    ) -> Result<wit::HandleOutcome, wit::GuestError>;
    fn snapshot(&self) -> Vec<u8>;
    fn restore(&mut self, bytes: &[u8]) -> Result<(), wit::GuestError>;
    fn state(&self) -> Vec<u8>;
}

/// One aggregate instance and the context `handle` passes it: the actor id
/// from `init`, the rest refilled for each command in place (its strings
/// keep their capacity, so a command allocates nothing for its context).
struct Slot<A> {
    state: A,
    ctx: Context,
}

impl<A: Aggregate> Actor for Slot<A> {
    fn apply(&mut self, packed: &[u8]) -> Result<(), wit::ApplyError> {
        let mut announce = true;
        for (i, item) in codec::unpack(packed).enumerate() {
            let fail = |cause| wit::ApplyError { index: i as u32, error: wit::GuestError::Undecodable(cause) };
            let decoded: A::Event = item.and_then(codec::unpack_one).map_err(fail)?;
            announce = announce && entering(i);
            self.state.apply(&decoded);
        }
        Ok(())
    }

    fn handle(
        &mut self,
        ctx: wit::CommandContext,
        command: wit::Message,
    ) -> Result<wit::HandleOutcome, wit::GuestError> {
        if !variant_names::<A::Command>().contains(&command.name.as_str()) {
            return Err(wit::GuestError::UnknownCommand(command.name));
        }
        let decoded: A::Command = codec::join(&command.name, &command.payload).map_err(wit::GuestError::Undecodable)?;
        let refill = |into: &mut String, from: Option<&str>| {
            into.clear();
            into.push_str(from.unwrap_or(&ctx.command_id));
        };
        refill(&mut self.ctx.correlation_id, ctx.correlation_id.as_deref());
        refill(&mut self.ctx.causation_id, ctx.causation_id.as_deref());
        self.ctx.command_id = ctx.command_id;
        self.ctx.timestamp_ms = ctx.timestamp_ms;
        self.ctx.version = ctx.version;
        let events = match self.state.handle(&self.ctx, decoded) {
            Ok(events) => events,
            Err(r) => return Ok(wit::HandleOutcome::Rejected(wit::Rejection { code: r.code, message: r.message })),
        };
        // The state folds the events as replay will see them: encoded, then
        // decoded back. An event that does not survive that is refused here,
        // before it is stored, rather than stopping every later replay.
        let mut out = Vec::with_capacity(events.len());
        let mut stored = Vec::with_capacity(events.len());
        for event in &events {
            let encoded = codec::encode_named(event);
            let (name, payload) = codec::split_encoded(&encoded).map_err(wit::GuestError::InvalidEvent)?;
            let read_back: A::Event = codec::unpack_one(&encoded)
                .map_err(|cause| wit::GuestError::InvalidEvent(format!("`{name}` does not decode back: {cause}")))?;
            stored.push(read_back);
            out.push(wit::Message { name, payload });
        }
        let mut announce = true;
        for (i, event) in stored.iter().enumerate() {
            announce = announce && entering(i);
            self.state.apply(event);
        }
        Ok(wit::HandleOutcome::Accepted(out))
    }

    fn snapshot(&self) -> Vec<u8> {
        self.state.snapshot()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), wit::GuestError> {
        self.state = A::restore(bytes).map_err(|e| wit::GuestError::Undecodable(format!("snapshot: {e}")))?;
        Ok(())
    }

    fn state(&self) -> Vec<u8> {
        codec::encode_named(&self.state)
    }
}

/// Tells the host the event at `index` of this call's events is folded
/// next, so the `apply` that folds it reads that event's recorded time and
/// randomness seeded from its version (WIT `fold.enter-event`): the same
/// values as it is decided and on every replay, whatever the batch. Returns
/// whether the host wants the next events of the call announced too.
pub(crate) fn entering(index: usize) -> bool {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::aether::domain::fold::enter_event(index as u32);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = index;
        false
    }
}

thread_local! {
    /// The one actor this instance serves; set by `init`.
    static ACTOR: RefCell<Option<Box<dyn Actor>>> = const { RefCell::new(None) };
}

pub fn init(registry: &[Registration], aggregate: &str, actor_id: &str) -> Result<(), wit::GuestError> {
    let reg = registry
        .iter()
        .find(|r| r.name == aggregate)
        .ok_or_else(|| wit::GuestError::UnknownAggregate(aggregate.to_string()))?;
    ACTOR.with(|a| *a.borrow_mut() = Some((reg.create)(actor_id.to_string())));
    Ok(())
}

fn with_actor<R>(f: impl FnOnce(&mut dyn Actor) -> Result<R, wit::GuestError>) -> Result<R, wit::GuestError> {
    ACTOR.with(|a| match a.borrow_mut().as_mut() {
        Some(actor) => f(actor.as_mut()),
        None => Err(wit::GuestError::NotInitialised),
    })
}

pub fn apply(packed: Vec<u8>) -> Result<(), wit::ApplyError> {
    ACTOR.with(|a| match a.borrow_mut().as_mut() {
        Some(actor) => actor.apply(&packed),
        None => Err(wit::ApplyError { index: 0, error: wit::GuestError::NotInitialised }),
    })
}

pub fn handle(ctx: wit::CommandContext, command: wit::Message) -> Result<wit::HandleOutcome, wit::GuestError> {
    with_actor(|a| a.handle(ctx, command))
}

pub fn snapshot() -> Result<Vec<u8>, wit::GuestError> {
    with_actor(|a| Ok(a.snapshot()))
}

pub fn restore(bytes: Vec<u8>) -> Result<(), wit::GuestError> {
    with_actor(|a| a.restore(&bytes))
}

pub fn state() -> Result<Vec<u8>, wit::GuestError> {
    with_actor(|a| Ok(a.state()))
}

/// The model in the bindings' types.
pub fn wit_model(model: &DomainModel) -> wit::DomainModel {
    let messages = |ms: &[crate::MessageModel]| {
        ms.iter().map(|m| wit::MessageType { name: m.name.clone(), schema: m.schema.clone() }).collect()
    };
    wit::DomainModel {
        name: model.name.clone(),
        sdk_version: model.sdk_version.clone(),
        aggregates: model
            .aggregates
            .iter()
            .map(|a| wit::AggregateType {
                name: a.name.clone(),
                commands: messages(&a.commands),
                events: messages(&a.events),
                state_schema: a.state_schema.clone(),
            })
            .collect(),
        policies: model
            .policies
            .iter()
            .map(|p| wit::PolicyType { name: p.name.clone(), reacts_to: p.reacts_to.clone(), sends: p.sends.clone() })
            .collect(),
        read_models: model
            .read_models
            .iter()
            .map(|r| wit::ReadModelType {
                name: r.name.clone(),
                consumes: r.consumes.clone(),
                row_schema: r.row_schema.clone(),
                indexes: r.indexes.clone(),
            })
            .collect(),
    }
}

/// Exports a domain's aggregates, policies and read models as a component.
///
/// ```ignore
/// aether_guest::domain!(name: "bank", aggregates: [Account]);
/// aether_guest::domain!(
///     name: "bank",
///     aggregates: [Account, Transfer],
///     policies: [TransferSaga],
///     read_models: [AccountsByOwner],
/// );
/// ```
///
/// Defines `pub fn describe() -> aether_guest::DomainModel` in the calling
/// module (natively too, for tests) and, on `wasm32`, the component's exports.
/// Use it once per component, at the crate root.
#[macro_export]
macro_rules! domain {
    (
        name: $name:expr,
        aggregates: [$($agg:ty),+ $(,)?]
        $(, policies: [$($pol:ty),* $(,)?])?
        $(, read_models: [$($rm:ty),* $(,)?])?
        $(,)?
    ) => {
        /// The component's EventStorming model.
        pub fn describe() -> $crate::DomainModel {
            $crate::__private::model($name, &__aether_registry(), &__aether_policies(), &__aether_read_models())
        }

        fn __aether_registry() -> ::std::vec::Vec<$crate::__private::Registration> {
            ::std::vec![$($crate::__private::Registration::of::<$agg>()),+]
        }

        fn __aether_policies() -> ::std::vec::Vec<$crate::__private::PolicyRegistration> {
            ::std::vec![$($($crate::__private::PolicyRegistration::of::<$pol>()),*)?]
        }

        fn __aether_read_models() -> ::std::vec::Vec<$crate::__private::ReadModelRegistration> {
            ::std::vec![$($($crate::__private::ReadModelRegistration::of::<$rm>()),*)?]
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::aether::domain::types as __wit;
            use ::std::result::Result;
            use ::std::string::String;
            use ::std::vec::Vec;
            struct __AetherExports;
            impl $crate::bindings::exports::aether::domain::aggregate::Guest for __AetherExports {
                fn describe() -> __wit::DomainModel {
                    $crate::__private::wit_model(&describe())
                }
                fn init(aggregate: String, actor_id: String) -> Result<(), __wit::GuestError> {
                    $crate::__private::init(&__aether_registry(), &aggregate, &actor_id)
                }
                fn apply(events: Vec<u8>) -> Result<(), __wit::ApplyError> {
                    $crate::__private::apply(events)
                }
                fn handle(ctx: __wit::CommandContext, command: __wit::Message) -> Result<__wit::HandleOutcome, __wit::GuestError> {
                    $crate::__private::handle(ctx, command)
                }
                fn snapshot() -> Result<Vec<u8>, __wit::GuestError> {
                    $crate::__private::snapshot()
                }
                fn restore(snapshot: Vec<u8>) -> Result<(), __wit::GuestError> {
                    $crate::__private::restore(snapshot)
                }
                fn state() -> Result<Vec<u8>, __wit::GuestError> {
                    $crate::__private::state()
                }
            }
            impl $crate::bindings::exports::aether::domain::policy::Guest for __AetherExports {
                fn react(policy: String, inputs: Vec<__wit::PolicyInput>) -> Result<Vec<__wit::Reaction>, __wit::GuestError> {
                    $crate::__private::react(&__aether_policies(), &policy, inputs)
                }
            }
            impl $crate::bindings::exports::aether::domain::read_model::Guest for __AetherExports {
                fn keys(read_model: String, events: Vec<__wit::StoredEvent>) -> Result<Vec<__wit::RowKeys>, __wit::GuestError> {
                    $crate::__private::keys(&__aether_read_models(), &read_model, events)
                }
                fn fold(
                    read_model: String,
                    key: String,
                    row: ::std::option::Option<Vec<u8>>,
                    events: Vec<__wit::StoredEvent>,
                ) -> Result<::std::option::Option<Vec<u8>>, __wit::ApplyError> {
                    $crate::__private::fold(&__aether_read_models(), &read_model, &key, row, events)
                }
            }
            $crate::bindings::__export_domain_world!(__AetherExports with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JsonSchema, Rejection};
    use serde::{Deserialize, Serialize};

    /// Echoes the context `handle` was given.
    #[derive(Default, Serialize, Deserialize, JsonSchema)]
    struct Echo;

    #[derive(Serialize, Deserialize, JsonSchema)]
    enum EchoCommand {
        Look,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
    enum EchoEvent {
        Saw { actor: String, command: String, correlation: String, causation: String },
    }

    impl Aggregate for Echo {
        const NAME: &'static str = "Echo";
        type Command = EchoCommand;
        type Event = EchoEvent;

        fn handle(&self, ctx: &Context, _: EchoCommand) -> Result<Vec<EchoEvent>, Rejection> {
            Ok(vec![EchoEvent::Saw {
                actor: ctx.actor_id.clone(),
                command: ctx.command_id.clone(),
                correlation: ctx.correlation_id.clone(),
                causation: ctx.causation_id.clone(),
            }])
        }

        fn apply(&mut self, _: &EchoEvent) {}
    }

    fn seen(correlation: Option<&str>, causation: Option<&str>) -> EchoEvent {
        let mut actor = (Registration::of::<Echo>().create)("echo-1".into());
        let (name, payload) = codec::split(&EchoCommand::Look).unwrap();
        let ctx = wit::CommandContext {
            command_id: "cmd-7".into(),
            correlation_id: correlation.map(str::to_string),
            causation_id: causation.map(str::to_string),
            timestamp_ms: 0,
            version: 0,
        };
        let Ok(wit::HandleOutcome::Accepted(events)) = actor.handle(ctx, wit::Message { name, payload }) else {
            panic!("Look is accepted");
        };
        codec::join(&events[0].name, &events[0].payload).unwrap()
    }

    fn saw(correlation: &str, causation: &str) -> EchoEvent {
        EchoEvent::Saw {
            actor: "echo-1".into(),
            command: "cmd-7".into(),
            correlation: correlation.into(),
            causation: causation.into(),
        }
    }

    /// Folds its events; `Lossy` writes a string where it reads a number.
    #[derive(Default, Serialize, Deserialize, JsonSchema)]
    struct Tally {
        n: u64,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    enum TallyCommand {
        Add,
        Break,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    enum TallyEvent {
        Added,
        Lossy {
            #[serde(serialize_with = "as_text")]
            n: u64,
        },
    }

    fn as_text<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }

    impl Aggregate for Tally {
        const NAME: &'static str = "Tally";
        type Command = TallyCommand;
        type Event = TallyEvent;

        fn handle(&self, _: &Context, command: TallyCommand) -> Result<Vec<TallyEvent>, Rejection> {
            Ok(match command {
                TallyCommand::Add => vec![TallyEvent::Added, TallyEvent::Added],
                TallyCommand::Break => vec![TallyEvent::Added, TallyEvent::Lossy { n: 1 }],
            })
        }

        fn apply(&mut self, event: &TallyEvent) {
            if let TallyEvent::Added = event {
                self.n += 1;
            }
        }
    }

    fn tally_handle(actor: &mut dyn Actor, command: TallyCommand) -> Result<wit::HandleOutcome, wit::GuestError> {
        let (name, payload) = codec::split(&command).unwrap();
        let ctx = wit::CommandContext {
            command_id: "c".into(),
            correlation_id: None,
            causation_id: None,
            timestamp_ms: 0,
            version: 0,
        };
        actor.handle(ctx, wit::Message { name, payload })
    }

    fn tally(actor: &dyn Actor) -> u64 {
        rmp_serde::from_slice::<Tally>(&actor.snapshot()).unwrap().n
    }

    #[test]
    fn handle_folds_the_events_it_accepts_in_the_same_call() {
        let mut actor = (Registration::of::<Tally>().create)("t-1".into());
        let outcome = tally_handle(actor.as_mut(), TallyCommand::Add).unwrap();
        assert!(matches!(outcome, wit::HandleOutcome::Accepted(ref events) if events.len() == 2));
        assert_eq!(tally(actor.as_ref()), 2, "the state includes both events");
    }

    #[test]
    fn an_event_that_does_not_decode_back_is_refused_and_nothing_is_folded() {
        let mut actor = (Registration::of::<Tally>().create)("t-1".into());
        let Err(wit::GuestError::InvalidEvent(why)) = tally_handle(actor.as_mut(), TallyCommand::Break) else {
            panic!("an event replay could not read is refused");
        };
        assert!(why.contains("`Lossy` does not decode back"), "{why}");
        assert_eq!(tally(actor.as_ref()), 0, "not even the good event before it was folded");
    }

    #[test]
    fn the_context_names_the_actor_from_init_and_ids_left_out_are_the_command_id() {
        assert_eq!(seen(None, None), saw("cmd-7", "cmd-7"));
        assert_eq!(seen(Some("corr-1"), None), saw("corr-1", "cmd-7"));
        assert_eq!(seen(None, Some("cause-2")), saw("cmd-7", "cause-2"));
        assert_eq!(seen(Some("corr-1"), Some("cause-2")), saw("corr-1", "cause-2"));
    }
}
