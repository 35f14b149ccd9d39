//! `portable-service`: the commands users run by hand on built images, `check` and `sign`.
//!
//! An image's derivation never runs this program (its builder is portable-service-builder); an
//! image's `.check` derivation does.

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use clap::Parser;
use portable_service_tools::{check, signing};
use std::process::ExitCode;

fn main() -> ExitCode {
    match Cli::parse().command {
        // 0: accepted, 1: refused, 2: the check itself failed (an unreadable image, say)
        Job::Check(args) => match check_command(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Job::Sign(args) => match sign_command(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Check and sign systemd Portable Service images built with Nix (`portableService`).
#[derive(clap::Parser)]
#[command(name = "portable-service", version)]
struct Cli {
    #[command(subcommand)]
    command: Job,
}

#[derive(clap::Subcommand)]
enum Job {
    /// Say what systemd-portabled and systemd-dissect will do with an image (exit 0: accepted,
    /// 1: refused, 2: unreadable).
    Check(CheckArgs),
    /// Sign an image's root hash, which systemd checks against the certificates in the host's
    /// /etc/verity.d/: NAME.roothash.p7s beside a naked image, the signature partition inside a
    /// disk image (format = "ddi").
    Sign(SignArgs),
}

/// Sign the root hash of an image built with `verity = true`. The key stays outside the Nix
/// store: copy the image out of the store first (or sign in CI after `nix build`).
#[derive(clap::Args)]
struct SignArgs {
    /// The private key, unencrypted PEM (PKCS#8, PKCS#1 RSA or SEC1 EC; RSA or EC P-256).
    #[arg(long, value_name = "KEY.pem")]
    key: Utf8PathBuf,
    /// The key's certificate, PEM or DER: the one the hosts trust (/etc/verity.d/).
    #[arg(long, value_name = "CERT.pem")]
    cert: Utf8PathBuf,
    /// The image: a naked one with NAME.roothash beside it (NAME.roothash.p7s is written
    /// there), or a disk image, which gets its signature partition (written in place: sign a
    /// copy outside the store).
    #[arg(value_name = "IMAGE.raw")]
    image: Utf8PathBuf,
    /// Replace the signature of a disk image signed already.
    #[arg(long)]
    resign: bool,
}

fn sign_command(args: SignArgs) -> Result<()> {
    if portable_service_rules::ddi::is_ddi(&args.image)? {
        let cert = signing::sign_disk(&args.image, &args.key, &args.cert, args.resign)?;
        println!(
            "signed {}: its signature partition holds the root hash's signature by {}",
            args.image,
            cert.subject()
        );
        return Ok(());
    }
    let p7s = signing::sign(&args.image, &args.key, &args.cert)?;
    let cert = signing::Cert::read(&args.cert)?;
    println!("wrote {p7s}: signed by {}", cert.subject());
    Ok(())
}

/// What systemd-portabled and systemd-dissect will say about an image, without systemd and
/// without root. Exit status 0 when systemd would attach the image and its units can start, 1
/// when it would not, 2 when the images can't be read.
#[derive(clap::Args)]
struct CheckArgs {
    /// The portable service image (a squashfs file, or a disk image with one).
    image: Utf8PathBuf,
    /// An extension image attached with it (`portablectl attach --extension`), in order.
    #[arg(long = "extension", value_name = "EXT.raw")]
    extensions: Vec<Utf8PathBuf>,
    /// A match to attach with (default: the image's name, the file name up to its first `_`, as
    /// portablectl takes it).
    #[arg(long = "prefix", value_name = "P")]
    prefixes: Vec<String>,
    /// The systemd version whose rules decide: those measured (252, 254, 257, 262) as
    /// measured, another by the rules of the newest measured version not above it.
    #[arg(long, default_value_t = check::NEWEST, value_parser = clap::value_parser!(u32).range(252..))]
    systemd: u32,
    /// A certificate the hosts trust (as in their /etc/verity.d/): the images' root hash
    /// signatures must have been made by one of them.
    #[arg(long = "cert", value_name = "CERT.pem")]
    certs: Vec<Utf8PathBuf>,
    /// The images will be signed after this check (`sign`, after `nix build`): a hash tree
    /// without its signature yet is reported, not refused (what an image's `.check` does).
    #[arg(long)]
    signed_later: bool,
    /// The hosts' architecture as systemd names it (x86-64, arm64, ...), which an extension's
    /// ARCHITECTURE= must match (default: this machine's).
    #[arg(long, value_name = "ARCH", default_value_t = check::this_architecture())]
    architecture: String,
    /// The store directory the image's symlinks point into.
    #[arg(long, default_value = "/nix/store")]
    store_dir: Utf8PathBuf,
    /// The report as one JSON document.
    #[arg(long)]
    json: bool,
    /// Also write the report to this file (a Nix check's output).
    #[arg(long, value_name = "FILE")]
    report: Option<Utf8PathBuf>,
}

/// Runs the check and prints the report; whether systemd would accept the image.
fn check_command(args: CheckArgs) -> Result<bool> {
    use check::tree::Image;
    let base = Image::open(&args.image)?;
    let extensions = args
        .extensions
        .iter()
        .map(|e| Image::open(e))
        .collect::<Result<Vec<_>>>()?;
    let certs = args
        .certs
        .iter()
        .map(|c| signing::Cert::read(c))
        .collect::<Result<Vec<_>>>()?;
    let options = check::Options {
        prefixes: args.prefixes,
        certs,
        signed_later: args.signed_later,
        systemd: args.systemd,
        store_dir: args.store_dir.into(),
        architecture: args.architecture,
    };
    let report = check::check(&base, &extensions, &options);
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.text()
    };
    print!("{text}");
    if let Some(file) = &args.report {
        std::fs::write(file, &text).with_context(|| format!("cannot write {file}"))?;
    }
    Ok(report.accepted)
}
