#![no_main]
//! See `aether_host::fuzz::msgpack_json`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aether_host::fuzz::msgpack_json(data);
});
