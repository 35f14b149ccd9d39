//! The builder's entry point: find the attrs file, build the image, and turn any error into one
//! message in the build log and a failing exit status.
//!
//! Nix runs this as the derivation's `builder` with no arguments. Run by hand, it takes the path of
//! an attrs file as its one argument. That is its whole command line, read without a parser
//! crate: what users run by hand (`check`, `sign`) is the `portable-service` program of
//! crates/portable-service-tools, so that a change there never changes an image's derivation.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use portable_service_builder::attrs::{self, Attrs};
use portable_service_builder::parts;
use std::process::ExitCode;

const HELP: &str = "\
Builds a systemd Portable Service image: the builder of a `portableService` derivation.

Usage: portable-service-builder [ATTRS.json]

Nix runs it with no arguments: it reads the structured attrs file Nix wrote
($NIX_ATTRS_JSON_FILE) and writes the image to $out. Given ATTRS.json, it builds from that
file instead (a build by hand).

Options:
  -h, --help     Print help
  -V, --version  Print version

Environment:
  PORTABLE_SERVICE_BUILDER_LOG  error, warn, info (default), debug or trace

To check or sign an image, use `portable-service check` and `portable-service sign`
(the portable-service-tools package).
";

fn main() -> ExitCode {
    let level = std::env::var("PORTABLE_SERVICE_BUILDER_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_max_level(level)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let attrs = match args.as_slice() {
        [] => None,
        [flag] if flag == "-h" || flag == "--help" => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        [flag] if flag == "-V" || flag == "--version" => {
            println!("portable-service-builder {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        [job, ..] if job == "check" || job == "sign" => {
            eprintln!(
                "error: `{job}` is a command of `portable-service` (the portable-service-tools \
                 package): portable-service {job} ..."
            );
            return ExitCode::from(2);
        }
        [path] if !path.starts_with('-') => Some(Utf8PathBuf::from(path)),
        _ => {
            eprintln!("error: unexpected arguments {args:?}\n\nUsage: portable-service-builder [ATTRS.json] (see --help)");
            return ExitCode::from(2);
        }
    };
    match build(attrs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build(attrs: Option<Utf8PathBuf>) -> Result<()> {
    let path = match attrs {
        Some(path) if !path.is_file() => {
            bail!("{path} is not a file: give the attrs file to build from")
        }
        Some(path) => path,
        None => attrs::locate(
            std::env::var("NIX_ATTRS_JSON_FILE").ok().as_deref(),
            std::env::var("NIX_BUILD_TOP").ok().as_deref(),
            |p: &Utf8Path| p.is_file(),
        )?,
    };
    // Nix's `cores` setting (`--cores`, 0 = all); the image is the same whatever it is.
    let cores = std::env::var("NIX_BUILD_CORES")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n > 0);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the structured attrs file {path}"))?;
    match parts::job(&text) {
        parts::Job::Part => {
            let attrs: parts::PartAttrs = serde_json::from_str(&text)
                .with_context(|| format!("invalid structured attrs file {path} (of a part)"))?;
            parts::build_part(&attrs, cores)?;
            return Ok(());
        }
        parts::Job::ListClosure => {
            let attrs: parts::ListAttrs = serde_json::from_str(&text).with_context(|| {
                format!("invalid structured attrs file {path} (of a closure list)")
            })?;
            return parts::list_closure(&attrs);
        }
        parts::Job::Image => {}
    }
    let attrs = Attrs::read(&path)?;
    portable_service_builder::build_image(&attrs, cores)?;
    Ok(())
}
