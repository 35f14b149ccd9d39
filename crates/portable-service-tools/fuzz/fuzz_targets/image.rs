//! `check` on any file: a squashfs image or a disk image, opened as `portable-service check`
//! opens it (backhand for the file system, `ddi` for the table) and judged with the default
//! options; reading the unit and release files included.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use portable_service_tools::check::{self, tree::Image};

fuzz_target!(|data: &[u8]| {
    let path = common::file_with("svc_1.raw", data);
    if let Ok(image) = Image::open(&path, "x86-64") {
        let _ = check::check(&image, &[], &check::Options::default());
    }
});
