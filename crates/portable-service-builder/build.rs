//! Marks the image tests (tests/image.rs) ignored where they have no place for a test store
//! (tests/support/store_place.rs: a Nix build without its sandbox), so that they show as
//! ignored there, with the reason, instead of passing untried. Decided here because whether a
//! test is ignored is fixed when it is compiled; the tests are compiled where they run.

#[path = "tests/support/store_place.rs"]
mod store_place;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_test_store)");
    println!("cargo::rerun-if-changed=tests/support/store_place.rs");
    println!("cargo::rerun-if-env-changed=HOME");
    // OUT_DIR is inside the target directory, as the tests' CARGO_TARGET_TMPDIR is
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    if let Err(why) = store_place::store_parent(&out) {
        println!("cargo::warning=the image tests are ignored: no place for a test store: {why}");
        println!("cargo::rustc-cfg=no_test_store");
    }
}
