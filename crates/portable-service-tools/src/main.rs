//! `portable-service`: the commands users run by hand on built images, `check`, `sign` and
//! `publish`, and `transfers`, the builder of an image's `.sysupdate` files.
//!
//! An image's derivation never runs this program (its builder is portable-service-builder); an
//! image's `.check` and `.sysupdate` derivations do.

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use clap::Parser;
use portable_service_tools::{check, feed, openpgp, signing, transfers};
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
        Job::Sign(args) => finish(sign_command(args)),
        Job::Publish(args) => finish(publish_command(args)),
        Job::Transfers(args) => finish(transfers_command(args)),
    }
}

fn finish(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
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
    /// Add images to a feed that hosts update from with systemd-sysupdate: their files,
    /// SHA256SUMS over all of them, signed (SHA256SUMS.gpg, by gpg); the newest versions kept.
    Publish(PublishArgs),
    /// Write the host's side of a feed for one image: systemd-sysupdate's transfer definitions
    /// and the units that update, switch and roll back (what an image's `.sysupdate` holds).
    Transfers(TransfersArgs),
}

/// Publish built (and signed) images into a feed directory, which any web server then serves.
/// The feed is checked first (every file listed in SHA256SUMS, with the bytes listed; regular
/// files only, no symbolic links); a version published before must come with the same bytes.
/// Nothing changes unless all is well.
#[derive(clap::Args)]
struct PublishArgs {
    /// The feed directory (made if missing).
    #[arg(long, value_name = "DIR")]
    feed: Utf8PathBuf,
    /// The OpenPGP secret key that signs the feed, as `gpg --armor --export-secret-keys`
    /// writes it (keep it out of the Nix store).
    #[arg(long, value_name = "KEY.asc")]
    key: Utf8PathBuf,
    /// A file holding the key's passphrase, if it has one.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<Utf8PathBuf>,
    /// How many versions of each image the feed keeps (the newest).
    #[arg(long, default_value_t = 5)]
    keep: usize,
    /// A certificate the hosts trust to sign root hashes (their /etc/verity.d): every
    /// `.roothash.p7s` published must be made by one of these. Without it, a signature is
    /// only checked to be over its image's root hash.
    #[arg(long = "cert", value_name = "CERT")]
    certs: Vec<Utf8PathBuf>,
    /// Sign a feed whose list this key didn't sign (another key, or none): the list is then
    /// trusted as it is, checked against its files only. Without it such a feed is refused.
    #[arg(long)]
    new_key: bool,
    /// Also write the key's public part here, in the binary form hosts install as
    /// /etc/systemd/import-pubring.pgp (import-pubring.gpg before systemd 258).
    #[arg(long, value_name = "FILE")]
    public_key: Option<Utf8PathBuf>,
    /// Mark the list fresh for at least DAYS days from now (1 to 3650): SHA256SUMS gets one
    /// BEST-BEFORE-YYYY-MM-DD line, the day whose 00:00 UTC is the first midnight at or after
    /// now + DAYS days. From then on systemd-sysupdate 260 and newer and the host agent refuse
    /// the list as stale (older sysupdate ignores the line): publish again before then (the
    /// same images do) to keep hosts updating. Without it no such line is written, and one an
    /// earlier publish wrote is removed.
    #[arg(long, value_name = "DAYS",
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    valid_for: Option<u32>,
    /// Images: NAME_VERSION.raw files (with their dm-verity files beside them), or Nix outputs
    /// holding one.
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<Utf8PathBuf>,
}

fn publish_command(args: PublishArgs) -> Result<()> {
    let signer = openpgp::Signer::import(&args.key, args.passphrase_file.as_deref())?;
    let certs = args
        .certs
        .iter()
        .map(|c| signing::Cert::read(c))
        .collect::<Result<Vec<_>>>()?;
    let images = args
        .images
        .iter()
        .map(|i| feed::Image::find(i, &certs))
        .collect::<Result<Vec<_>>>()?;
    let best_before = match args.valid_for {
        Some(days) => Some(feed::best_before(now()?, days)),
        None => None,
    };
    let done = feed::publish(
        &args.feed,
        &images,
        &feed::Options {
            signer: &signer,
            keep: args.keep,
            new_key: args.new_key,
            best_before,
        },
    )?;
    if let Some(what) = &done.recovered {
        println!("{}: {what}", args.feed);
    }
    for name in &done.added {
        println!("added {}/{name}", args.feed);
    }
    for name in &done.unchanged {
        println!("unchanged {}/{name}", args.feed);
    }
    for name in &done.removed {
        println!(
            "removed {}/{name} (older than the {} kept)",
            args.feed, args.keep
        );
    }
    if done.signer.is_empty() {
        println!("{} unchanged: nothing new to publish", args.feed);
    } else {
        println!("signed {}/{} with {}", args.feed, feed::SUMS, done.signer);
    }
    if let Some(date) = best_before {
        println!(
            "{}/{} is fresh until {date} 00:00 UTC ({}{date})",
            args.feed,
            feed::SUMS,
            feed::BEST_BEFORE
        );
    }
    if let Some(out) = &args.public_key {
        signer.export_public(out)?;
        println!("wrote {out}: the public key hosts install as /etc/systemd/import-pubring.pgp");
    }
    Ok(())
}

/// Seconds since 1970-01-01 00:00 UTC: the clock's, or for the tests (tests/feed.rs) the value
/// of PORTABLE_SERVICE_NOW, said on standard error when it is used.
fn now() -> Result<u64> {
    if let Some(value) = std::env::var_os("PORTABLE_SERVICE_NOW") {
        let seconds = value
            .to_str()
            .and_then(|v| v.parse::<u64>().ok())
            // up to the year 5000: a day systemd's four digits can name, 3650 days on
            .filter(|s| *s < 95_617_584_000)
            .with_context(|| {
                format!("PORTABLE_SERVICE_NOW={value:?} is not seconds since 1970 (before 5000)")
            })?;
        eprintln!("note: the time is PORTABLE_SERVICE_NOW={seconds}, not the clock's");
        return Ok(seconds);
    }
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs())
}

/// The host's files for one image's feed, written below --out as they go below /etc.
#[derive(clap::Args)]
struct TransfersArgs {
    /// Where to write (`OUT/sysupdate.NAME.d/`, `OUT/systemd/system/`).
    #[arg(long, value_name = "DIR")]
    out: Utf8PathBuf,
    /// The image's name (its pname).
    #[arg(long)]
    name: String,
    /// The feed's URL (http:// or https://), the directory holding SHA256SUMS.
    #[arg(long)]
    url: String,
    /// Where the host keeps the versions.
    #[arg(long, default_value = "/var/lib/portables")]
    target: Utf8PathBuf,
    /// How many versions the host keeps (at least 2: the running one and one to roll back to).
    #[arg(long, default_value_t = 2)]
    keep: u32,
    /// The image carries a dm-verity hash tree and root hash beside it (`verity = true`).
    #[arg(long)]
    verity: bool,
    /// ... and the root hash's signature (`portable-service sign`).
    #[arg(long, requires = "verity")]
    signed: bool,
    /// A match to attach with (default: the name).
    #[arg(long = "prefix", value_name = "P")]
    prefixes: Vec<String>,
    /// For an extension: the name of the image it extends, attached with it.
    #[arg(long, value_name = "NAME")]
    base: Option<String>,
    /// Seconds a new version's units have to come up before it is rolled back.
    #[arg(long, value_name = "S", default_value_t = transfers::Health::default().timeout)]
    health_timeout: u32,
    /// Seconds they must then stay up, not restarted.
    #[arg(long, value_name = "S", default_value_t = transfers::Health::default().steady)]
    health_steady: u32,
    /// A word of the command that must exit 0 once the units are up (repeated: the program's
    /// absolute path, then its arguments).
    #[arg(
        long = "health-command",
        value_name = "WORD",
        allow_hyphen_values = true
    )]
    health_command: Vec<String>,
    /// portabled's profile to attach with.
    #[arg(long)]
    profile: Option<String>,
    /// For an extension: its base's own feed, fetched with it.
    #[arg(long, value_name = "URL", requires = "base")]
    base_url: Option<String>,
    /// The base is a naked image with its hash tree, root hash and signature beside it.
    #[arg(long, requires = "base_url")]
    base_verity: bool,
    /// The host agent (bin/portable-service-agent, static) to install with them.
    #[arg(long, value_name = "FILE")]
    agent: Utf8PathBuf,
}

fn transfers_command(args: TransfersArgs) -> Result<()> {
    let prefixes = if args.prefixes.is_empty() {
        vec![args.name.clone()]
    } else {
        args.prefixes
    };
    let host = transfers::Host {
        name: args.name,
        url: args.url,
        target: args.target,
        keep: args.keep,
        verity: args.verity,
        signed: args.signed,
        prefixes,
        base: args.base.map(|name| transfers::Base {
            name,
            url: args.base_url,
            verity: args.base_verity,
        }),
        health: transfers::Health {
            timeout: args.health_timeout,
            steady: args.health_steady,
        },
        health_command: args.health_command,
        profile: args.profile,
    };
    for file in host.write(&args.out, &args.agent)? {
        println!("wrote {file}");
    }
    Ok(())
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
    /// The systemd version whose rules decide: those measured (239, 245, 247, 249, 252, 254,
    /// 257, 262) as measured, another by the rules of the newest measured version not above it
    /// (248 by 247's, 250 and 251 by 249's).
    #[arg(long, default_value_t = check::NEWEST, value_parser = clap::value_parser!(u32).range(check::OLDEST as i64..))]
    systemd: u32,
    /// The profile the hosts attach with (`portablectl attach --profile`), one systemd ships.
    #[arg(long, default_value = "default", value_parser = check::PROFILES)]
    profile: String,
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
    let base = Image::open(&args.image, &args.architecture)?;
    let extensions = args
        .extensions
        .iter()
        .map(|e| Image::open(e, &args.architecture))
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
        profile: args.profile,
    };
    let report = check::check(&base, &extensions, &options)?;
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
