#![no_main]
//! See `aether_host::fuzz::embedded_log`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    aether_host::fuzz::embedded_log(data);
});
