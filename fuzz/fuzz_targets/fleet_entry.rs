//! Shared entries read from etcd (written by anything with access to the prefix):
//! a key and a value, split at the first newline of the input. Never a panic; what
//! parses is canonical: written back it gives the same key and value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::control::fleet_policy::store;

const PREFIX: &str = "/proxy/";

fuzz_target!(|data: &[u8]| {
    let (key, value) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(entry) = store::parse_entry(PREFIX, key, value) else {
        return;
    };
    assert_eq!(
        store::key(PREFIX, entry.list, entry.value.cidr).as_bytes(),
        key,
        "the key of a parsed entry is not canonical"
    );
    let written = serde_json::to_vec(&entry.value).expect("serializes");
    let again =
        store::parse_entry(PREFIX, key, &written).expect("what parsed, written back, parses");
    assert_eq!(again, entry);
});
