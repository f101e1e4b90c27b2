//! Sets of messages of several aggregates, as policies and read models see
//! them: what they react to or fold, and what a policy sends.
//!
//! A set is an enum with one variant per aggregate, made by
//! [`messages!`](crate::messages). Each variant holds either the aggregate's
//! own event (or command) enum, or a narrower enum of the same shape: its
//! variants are a subset of the aggregate's, with the same names and
//! payloads. The set's variant names are what the model declares (a policy
//! that holds a narrower `enum TransferAccountEvent { Debited {..} }` reacts
//! to `Account.Debited` and nothing else of `Account`), so what a policy
//! reacts to and sends is read off its types.

use crate::codec;
use crate::model::variant_names;
use crate::{Aggregate, Rejection};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One aggregate's part of a [`Messages`] set.
#[derive(Debug, Clone, Copy)]
pub struct MessagePart {
    /// The aggregate's name.
    pub aggregate: &'static str,
    /// The message names of this part (the held enum's variants).
    pub names: &'static [&'static str],
    /// The aggregate's own event names.
    pub aggregate_events: &'static [&'static str],
    /// The aggregate's own command names.
    pub aggregate_commands: &'static [&'static str],
    /// Whether a payload of this name decodes as the aggregate's own event.
    pub decodes_as_event: fn(&str, &[u8]) -> Result<(), String>,
    /// Whether a payload of this name decodes as the aggregate's own command.
    pub decodes_as_command: fn(&str, &[u8]) -> Result<(), String>,
}

impl MessagePart {
    /// The part of aggregate `A` held as `M` (`A::Event`, `A::Command`, or a
    /// narrower enum of the same shape).
    pub fn of<A: Aggregate, M: DeserializeOwned>() -> Self {
        Self {
            aggregate: A::NAME,
            names: variant_names::<M>(),
            aggregate_events: variant_names::<A::Event>(),
            aggregate_commands: variant_names::<A::Command>(),
            decodes_as_event: |name, payload| codec::join::<A::Event>(name, payload).map(drop),
            decodes_as_command: |name, payload| codec::join::<A::Command>(name, payload).map(drop),
        }
    }

    /// The qualified names (`"Aggregate.Message"`) of this part.
    pub fn qualified(&self) -> impl Iterator<Item = String> + '_ {
        self.names.iter().map(|n| format!("{}.{n}", self.aggregate))
    }
}

/// A set of messages of several aggregates; implemented by
/// [`messages!`](crate::messages).
pub trait Messages: Sized + 'static {
    /// The aggregates of the set, each with its message names.
    fn parts() -> Vec<MessagePart>;

    /// The message of `aggregate` named `name`, or `None` if it is not in the set.
    ///
    /// # Errors
    ///
    /// A message naming why the payload does not decode.
    fn decode(aggregate: &str, name: &str, payload: &[u8]) -> Result<Option<Self>, String>;

    /// The aggregate, name and MessagePack payload of this message.
    ///
    /// # Errors
    ///
    /// If the held value does not serialise as an enum variant.
    fn encode(&self) -> Result<(&'static str, String, Vec<u8>), String>;

    /// The qualified names (`"Aggregate.Message"`) of the whole set.
    fn qualified_names() -> Vec<String> {
        Self::parts().iter().flat_map(|p| p.qualified().collect::<Vec<_>>()).collect()
    }
}

/// Decodes one part of a set; used by [`messages!`](crate::messages).
#[doc(hidden)]
pub fn decode_part<M: DeserializeOwned>(name: &str, payload: &[u8]) -> Result<Option<M>, String> {
    if !variant_names::<M>().contains(&name) {
        return Ok(None);
    }
    codec::join(name, payload).map(Some)
}

/// Encodes one part of a set; used by [`messages!`](crate::messages).
#[doc(hidden)]
pub fn encode_part<M: Serialize>(
    aggregate: &'static str,
    message: &M,
) -> Result<(&'static str, String, Vec<u8>), String> {
    codec::split(message).map(|(name, payload)| (aggregate, name, payload))
}

/// A stored event with where it comes from, as policies and read models
/// receive it. Its identity is (aggregate, actor id, version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<E> {
    /// The aggregate that recorded it.
    pub aggregate: String,
    /// The actor (aggregate instance) that recorded it.
    pub actor_id: String,
    /// The actor's version with this event (its first event is 1).
    pub version: u64,
    /// The recorded time of the command that decided it, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// The command that decided it.
    pub command_id: String,
    /// The id shared by everything one request caused.
    pub correlation_id: String,
    /// The event.
    pub event: E,
}

/// A command a policy sends to one actor; the aggregate is the set's variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCommand<C> {
    /// The target actor's id.
    pub to: String,
    /// The command.
    pub command: C,
}

impl<C> SendCommand<C> {
    /// Sends `command` to the actor `to` of the aggregate the command belongs to.
    pub fn to(to: impl Into<String>, command: impl Into<C>) -> Self {
        Self { to: to.into(), command: command.into() }
    }
}

/// A command a policy sent that its target rejected: offered back to the
/// policy once, so a saga can compensate (see [`Policy::rejected`](crate::Policy::rejected)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected<C> {
    /// The command as the policy sent it.
    pub sent: SendCommand<C>,
    /// The id the host gave the command.
    pub command_id: String,
    /// Why the target refused it.
    pub rejection: Rejection,
    /// When it was rejected, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

/// Declares a set of messages of several aggregates: an enum with one
/// variant per aggregate, each holding that aggregate's event (or command)
/// enum, or a narrower enum with a subset of its variants, same names and
/// payloads. Implements [`Messages`](crate::Messages) and `From` each held type.
///
/// ```
/// # use aether_guest::{Aggregate, Context, JsonSchema, Rejection};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Default, Serialize, Deserialize, JsonSchema)] pub struct Account;
/// # #[derive(Serialize, Deserialize, JsonSchema)] pub enum AccountCommand { Deposit { amount: u64 } }
/// # #[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)] pub enum AccountEvent { Opened { owner: String }, Deposited { amount: u64 } }
/// # impl Aggregate for Account {
/// #     const NAME: &'static str = "Account";
/// #     type Command = AccountCommand;
/// #     type Event = AccountEvent;
/// #     fn handle(&self, _: &Context, _: AccountCommand) -> Result<Vec<AccountEvent>, Rejection> { Ok(vec![]) }
/// #     fn apply(&mut self, _: &AccountEvent) {}
/// # }
/// /// Only the deposits of an account.
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// pub enum DepositEvent {
///     Deposited { amount: u64 },
/// }
///
/// aether_guest::messages! {
///     #[derive(Debug, PartialEq)]
///     pub enum Watched {
///         Account(DepositEvent) of Account,
///     }
/// }
///
/// use aether_guest::Messages;
/// assert_eq!(Watched::qualified_names(), ["Account.Deposited"]);
/// ```
#[macro_export]
macro_rules! messages {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($inner:ty) of $agg:ty ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant($inner), )+
        }

        impl $crate::Messages for $name {
            fn parts() -> ::std::vec::Vec<$crate::MessagePart> {
                ::std::vec![$($crate::MessagePart::of::<$agg, $inner>()),+]
            }

            fn decode(
                aggregate: &str,
                name: &str,
                payload: &[u8],
            ) -> ::std::result::Result<::std::option::Option<Self>, ::std::string::String> {
                $(
                    if aggregate == <$agg as $crate::Aggregate>::NAME {
                        return $crate::__private::decode_part::<$inner>(name, payload).map(|m| m.map(Self::$variant));
                    }
                )+
                ::std::result::Result::Ok(::std::option::Option::None)
            }

            fn encode(
                &self,
            ) -> ::std::result::Result<(&'static str, ::std::string::String, ::std::vec::Vec<u8>), ::std::string::String>
            {
                match self {
                    $( Self::$variant(m) => $crate::__private::encode_part(<$agg as $crate::Aggregate>::NAME, m), )+
                }
            }
        }

        $(
            impl ::std::convert::From<$inner> for $name {
                fn from(m: $inner) -> Self {
                    Self::$variant(m)
                }
            }
        )+
    };
}
