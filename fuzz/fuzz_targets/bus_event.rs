#![no_main]
//! See `aether_host::fuzz::bus_event`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aether_host::fuzz::bus_event(data);
});
