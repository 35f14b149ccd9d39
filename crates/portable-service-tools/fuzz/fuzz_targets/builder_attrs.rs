//! The builder's reading of what Nix hands it: any text as the structured-attrs file, then
//! every check of `prepare` (the image plan), with a fixed unit file. Nothing is built.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portable_service_builder::attrs::Attrs;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(attrs) = Attrs::from_json(text) {
        let _ = portable_service_builder::prepare(&attrs, |_| {
            Ok(b"[Service]\nExecStart=/bin/sh\n".to_vec())
        });
    }
});
