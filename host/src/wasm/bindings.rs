//! Bindings generated from `wit/`, the one contract. Nothing outside
//! [`crate::wasm`] sees these types; they are converted at the boundary.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "aether:domain/domain-host",
    imports: {
        "wasi:cli/exit": trappable,
        // A fold that reads them unannounced traps (see `sandbox`).
        "wasi:clocks": trappable | tracing,
        "wasi:random": trappable | tracing,
        // Called once per event folded: no span per call.
        "aether:domain/fold.enter-event": exact,
        default: tracing,
    },
});
