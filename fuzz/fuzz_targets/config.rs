//! TOML text → validated configuration: never a panic, and every error names a
//! position or says it has none.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(e) = proxy::config::parse(text) {
        assert!(e.starts_with("<config>"), "error without its file: {e}");
    }
});
