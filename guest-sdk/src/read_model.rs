//! The read-model trait: fold events into rows the host keeps under keys.

use crate::messages::{Envelope, Messages};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A read model: answers a question a user interface asks ("the accounts
/// of this owner") from rows the host keeps, each under a key the read
/// model chooses from each event. Stateless: the rows live in the host.
///
/// For each event the host asks the [`keys`](ReadModel::keys) of the rows it
/// touches, then folds it into each of those rows with
/// [`fold`](ReadModel::fold). A row only ever sees the events that touch it,
/// in log order.
pub trait ReadModel: 'static {
    /// The read model's name in the model, e.g. `"AccountsByOwner"`.
    const NAME: &'static str;
    /// The events it folds, a set made by [`messages!`](crate::messages).
    type Event: Messages;
    /// A row. Its JSON Schema is in the model; it travels as MessagePack
    /// with field names, like an aggregate's state.
    type Row: Serialize + DeserializeOwned + JsonSchema;
    /// Top-level fields of [`Row`](ReadModel::Row) the host indexes, so rows
    /// can also be listed by such a field's value.
    const INDEXES: &'static [&'static str] = &[];

    /// The keys of the rows `event` touches: usually one; none to ignore it.
    fn keys(event: &Envelope<Self::Event>) -> Vec<String>;

    /// Folds `event` into the row under `key` (`None`: no row yet). Returns
    /// the new row, or `None` to delete it.
    fn fold(key: &str, row: Option<Self::Row>, event: &Envelope<Self::Event>) -> Option<Self::Row>;
}
