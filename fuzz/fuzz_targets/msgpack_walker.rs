#![no_main]
//! See `aether_host::fuzz::msgpack_walker`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aether_host::fuzz::msgpack_walker(data);
});
