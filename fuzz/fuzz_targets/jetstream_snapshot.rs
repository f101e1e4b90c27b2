#![no_main]
//! See `aether_host::fuzz::jetstream_snapshot`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aether_host::fuzz::jetstream_snapshot(data);
});
