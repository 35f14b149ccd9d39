//! The builder's entry point: find the attrs file, build the image, and turn any error into one
//! message in the build log and a failing exit status.
//!
//! Nix runs this as the derivation's `builder` with no arguments. Run by hand, it takes the path of
//! an attrs file as its one argument.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use portable_service_builder::attrs::{self, Attrs};
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTABLE_SERVICE_BUILDER_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let path = match std::env::args().nth(1) {
        Some(arg) => Utf8PathBuf::from(arg),
        None => attrs::locate(
            std::env::var("NIX_ATTRS_JSON_FILE").ok().as_deref(),
            std::env::var("NIX_BUILD_TOP").ok().as_deref(),
            |p: &Utf8Path| p.is_file(),
        )?,
    };
    let attrs = Attrs::read(&path)?;
    // Nix's `cores` setting (`--cores`, 0 = all); the image is the same whatever it is.
    let cores = std::env::var("NIX_BUILD_CORES")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n > 0);
    portable_service_builder::build_image(&attrs, cores)?;
    Ok(())
}
