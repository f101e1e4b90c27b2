//! One module per subcommand, each with an `execute`.

pub mod check;
pub mod cluster;
pub mod events;
pub mod load;
pub mod model;
pub mod nats_args;
pub mod otlp;
pub mod query;
pub mod remote;
pub mod send;
pub mod state;
pub mod upgrade;
pub mod verify;
