#![no_main]
//! See `aether_host::fuzz::embedded_value`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aether_host::fuzz::embedded_value(data);
});
