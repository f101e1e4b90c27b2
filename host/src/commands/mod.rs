//! One file per subcommand, each with an `execute`.

pub mod check;
