#![no_main]
//! See `aether_host::fuzz::nats_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aether_host::fuzz::nats_request(data);
});
