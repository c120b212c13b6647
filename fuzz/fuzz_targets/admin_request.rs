//! The admin socket's request decoder: any bytes give a request or an error, and a
//! request re-encodes to a line that decodes to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::api::Request;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<Request>(bytes) {
        let line = serde_json::to_string(&request).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), request);
    }
});
