//! Integration tests live in `all/`; this library is empty on purpose (Cargo needs a target).
