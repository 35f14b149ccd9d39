//! `portable-service`: the commands users run by hand on built images, `check`, `sign` and
//! `publish`, and `transfers`, the builder of an image's `.sysupdate` files.
//!
//! An image's derivation never runs this program (its builder is portable-service-builder); an
//! image's `.check` and `.sysupdate` derivations do. Every command ends by one table of exit
//! statuses ([`exit`], docs/cli.md).

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, CommandFactory, FromArgMatches};
use portable_service_rules::image_policy::ImagePolicy;
use portable_service_tools::exit;
use portable_service_tools::input::{self, shell_word};
use portable_service_tools::{check, feed, openpgp, signing, transfers, JSON_SCHEMA};
use std::process::ExitCode;

fn main() -> ExitCode {
    let job = match parse() {
        Ok(Parsed::Job(job)) => job,
        Ok(Parsed::Generate(args)) => return ExitCode::from(fail_or(generate_command(&args.out))),
        Err(code) => return code,
    };
    // what a failure nobody classified means: check can't judge; the others didn't do the job
    let (result, unclassified, json) = match *job {
        Job::Check(args) => {
            let json = args.json;
            (check_command(args), exit::UNREADABLE, json)
        }
        Job::Sign(args) => (sign_command(args), exit::REFUSED, false),
        Job::Publish(args) => {
            let json = args.json;
            (publish_command(args), exit::REFUSED, json)
        }
        Job::Transfers(args) => (transfers_command(args), exit::REFUSED, false),
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(e) => ExitCode::from(fail(&e, unclassified, json)),
    }
}

enum Parsed {
    Job(Box<Job>),
    Generate(GenerateArgs),
}

/// The command line, or the status to exit with at once: 0 after `--help` or `--version`,
/// [`exit::USAGE`] after a usage error (clap's own is 2, which here means an unreadable input).
fn parse() -> Result<Parsed, ExitCode> {
    let said = |e: clap::Error| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(exit::USAGE)
        } else {
            ExitCode::SUCCESS
        }
    };
    let generate = GenerateArgs::augment_args(clap::Command::new("generate").hide(true));
    let matches = command()
        .subcommand(generate)
        .try_get_matches()
        .map_err(said)?;
    match matches.subcommand() {
        Some(("generate", m)) => GenerateArgs::from_arg_matches(m)
            .map(Parsed::Generate)
            .map_err(said),
        _ => Cli::from_arg_matches(&matches)
            .map(|cli| Parsed::Job(Box::new(cli.command)))
            .map_err(said),
    }
}

/// The whole command line's definition, as it parses, and as completions and man pages are
/// made from it.
fn command() -> clap::Command {
    Cli::command().version(version())
}

/// The version, with the commit it was built from when the build said it
/// (`PORTABLE_SERVICE_COMMIT`: nix/tools.nix passes the flake's revision).
fn version() -> &'static str {
    static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        match option_env!("PORTABLE_SERVICE_COMMIT").filter(|c| !c.is_empty()) {
            Some(commit) => format!("{} (commit {commit})", env!("CARGO_PKG_VERSION")),
            None => env!("CARGO_PKG_VERSION").to_owned(),
        }
    });
    &VERSION
}

/// The status of `result`, a job without JSON whose unclassified failure is a refusal.
fn fail_or(result: Result<u8>) -> u8 {
    result.unwrap_or_else(|e| fail(&e, exit::REFUSED, false))
}

/// Says `error` (on stderr; with `json`, also as the error object on stdout) and gives the
/// exit status it means.
fn fail(error: &anyhow::Error, unclassified: u8, json: bool) -> u8 {
    let (status, file) = exit::status_of(error, unclassified);
    eprintln!("error: {error:#}");
    if json {
        #[derive(serde::Serialize)]
        struct Said<'a> {
            schema: u32,
            error: Error<'a>,
        }
        #[derive(serde::Serialize)]
        struct Error<'a> {
            file: Option<&'a str>,
            message: String,
            exit: u8,
        }
        let said = Said {
            schema: JSON_SCHEMA,
            error: Error {
                file: file.map(Utf8Path::as_str),
                message: format!("{error:#}"),
                exit: status,
            },
        };
        // a struct, not json!: its fields stay in this order, "schema" first
        // an output that can't be written can say nothing of it either
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&said).expect("plain fields")
        );
    }
    status
}

/// Check and sign systemd Portable Service images built with Nix (`portableService`).
#[derive(clap::Parser)]
#[command(name = "portable-service", after_help = exit::TABLE)]
struct Cli {
    #[command(subcommand)]
    command: Job,
}

#[derive(clap::Subcommand)]
enum Job {
    /// Say what systemd-portabled and systemd-dissect will do with an image (exit 0: accepted,
    /// 1: refused, 2: unreadable, 64: usage).
    #[command(after_help = exit::TABLE)]
    Check(CheckArgs),
    /// Sign an image's root hash, which systemd checks against the certificates in the host's
    /// /etc/verity.d/: NAME.roothash.p7s beside a naked image, the signature partition inside a
    /// disk image (format = "ddi").
    #[command(after_help = exit::TABLE)]
    Sign(SignArgs),
    /// Add images to a feed that hosts update from with systemd-sysupdate: their files,
    /// SHA256SUMS over all of them, signed (SHA256SUMS.gpg, by gpg); the newest versions kept.
    #[command(after_help = exit::TABLE)]
    Publish(PublishArgs),
    /// Write the host's side of a feed for one image: systemd-sysupdate's transfer definitions
    /// and the units that update, switch and roll back (what an image's `.sysupdate` holds).
    #[command(after_help = exit::TABLE)]
    Transfers(TransfersArgs),
}

/// Write the shell completions (bash, zsh, fish) and man pages below DIR/share, where a package
/// installs them.
// nix/tools.nix runs it. Parsed, but not part of [`command`], which they are made from: no
// user completes or reads of it.
#[derive(clap::Args)]
struct GenerateArgs {
    /// The prefix (a package's $out): DIR/share/bash-completion/completions/, ...
    #[arg(value_name = "DIR")]
    out: Utf8PathBuf,
}

/// Writes the completions and man pages, made from [`command`] by clap_complete and
/// clap_mangen so that they say what the parser takes (a hidden command is left out).
fn generate_command(prefix: &Utf8Path) -> Result<u8> {
    use clap_complete::Shell;
    let name = "portable-service";
    let share = prefix.join("share");
    for (shell, file) in [
        (Shell::Bash, format!("bash-completion/completions/{name}")),
        (Shell::Zsh, format!("zsh/site-functions/_{name}")),
        (
            Shell::Fish,
            format!("fish/vendor_completions.d/{name}.fish"),
        ),
    ] {
        let path = share.join(file);
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut command(), name, &mut text);
        write_made(&path, &text)?;
    }
    let man = share.join("man/man1");
    std::fs::create_dir_all(&man).with_context(|| format!("cannot make {man}"))?;
    clap_mangen::generate_to(command(), &man).with_context(|| format!("cannot write in {man}"))?;
    say(&format!(
        "wrote the completions and man pages below {share}\n"
    ))?;
    Ok(exit::OK)
}

fn write_made(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make {dir}"))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {path}"))
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
    #[arg(long, value_name = "DAYS", value_parser = days)]
    valid_for: Option<u32>,
    /// Images: NAME_VERSION.raw files (with their dm-verity files beside them), or Nix outputs
    /// holding one.
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<Utf8PathBuf>,
    /// Say what was done as one JSON document (`"schema"` its version), or on failure an
    /// error object (`{"schema": 1, "error": {"file", "message", "exit"}}`).
    #[arg(long)]
    json: bool,
}

fn publish_command(args: PublishArgs) -> Result<u8> {
    let signer = openpgp::Signer::import(&args.key, args.passphrase_file.as_deref())
        .map_err(exit::unreadable(&args.key))?;
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
    input::refuse_output_in_store(&args.feed, "--feed")?;
    if let Some(out) = &args.public_key {
        input::refuse_output_in_store(out, "--public-key")?;
    }
    // before the feed changes: one that can't be written stops the publish
    if let Some(out) = &args.public_key {
        signer.export_public(out)?;
    }
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
    let summary = PublishSummary {
        schema: JSON_SCHEMA,
        feed: args.feed.as_str(),
        fresh_until: best_before.map(|date| date.to_string()),
        public_key: args.public_key.as_deref().map(Utf8Path::as_str),
        keep: args.keep,
        done,
    };
    if args.json {
        say(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
    } else {
        say(&summary.text())?;
    }
    Ok(exit::OK)
}

/// What `publish` did, as `--json` writes it and as text for a person.
#[derive(serde::Serialize)]
struct PublishSummary<'a> {
    schema: u32,
    feed: &'a str,
    #[serde(flatten)]
    done: feed::Published,
    /// The list's BEST-BEFORE day (YYYY-MM-DD), if it has one.
    fresh_until: Option<String>,
    public_key: Option<&'a str>,
    #[serde(skip)]
    keep: usize,
}

impl PublishSummary<'_> {
    fn text(&self) -> String {
        let (feed, done) = (self.feed, &self.done);
        let mut lines = Vec::new();
        if let Some(what) = &done.recovered {
            lines.push(format!("{feed}: {what}"));
        }
        lines.extend(done.added.iter().map(|name| format!("added {feed}/{name}")));
        lines.extend(
            done.unchanged
                .iter()
                .map(|n| format!("unchanged {feed}/{n}")),
        );
        lines.extend(
            done.removed
                .iter()
                .map(|name| format!("removed {feed}/{name} (older than the {} kept)", self.keep)),
        );
        lines.push(if done.signer.is_empty() {
            format!("{feed} unchanged: nothing new to publish")
        } else {
            format!("signed {feed}/{} with {}", feed::SUMS, done.signer)
        });
        if let Some(date) = &self.fresh_until {
            lines.push(format!(
                "{feed}/{} is fresh until {date} 00:00 UTC ({}{date})",
                feed::SUMS,
                feed::BEST_BEFORE
            ));
        }
        if let Some(out) = self.public_key {
            lines.push(format!(
                "wrote {out}: the public key hosts install as /etc/systemd/import-pubring.pgp"
            ));
        }
        lines.iter().map(|l| format!("{l}\n")).collect()
    }
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

fn transfers_command(args: TransfersArgs) -> Result<u8> {
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
    // before anything is written: a value out of range is the command line's (64), an agent
    // that isn't there an unreadable input (2), and neither leaves half a tree in --out
    host.validate()
        .map_err(|e| exit::Failure::usage(format!("{e:#}")))?;
    if !args.agent.is_file() {
        let agent = &args.agent;
        return Err(
            exit::Failure::unreadable(agent, format!("{agent}: no such agent program")).into(),
        );
    }
    for file in host.write(&args.out, &args.agent)? {
        say(&format!("wrote {file}\n"))?;
    }
    Ok(exit::OK)
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

fn sign_command(args: SignArgs) -> Result<u8> {
    let image = input::image_file(&args.image)?;
    let disk = portable_service_rules::ddi::is_ddi(&image).map_err(exit::unreadable(&image))?;
    refuse_to_sign_in_store(&args, &image, disk)?;
    if disk {
        let cert = signing::sign_disk(&image, &args.key, &args.cert, args.resign)?;
        say(&format!(
            "signed {image}: its signature partition holds the root hash's signature by {}\n",
            cert.subject()
        ))?;
        return Ok(exit::OK);
    }
    let p7s = signing::sign(&image, &args.key, &args.cert)?;
    let cert = signing::Cert::read(&args.cert)?;
    say(&format!("wrote {p7s}: signed by {}\n", cert.subject()))?;
    Ok(exit::OK)
}

/// Refuses an image in the Nix store, naming the copy to sign: a disk image with its
/// signature partition written into it, a naked image with its hash tree and root hash.
fn refuse_to_sign_in_store(args: &SignArgs, image: &Utf8Path, disk: bool) -> Result<()> {
    let [tree, root, p7s] = portable_service_rules::verity::sidecars(image);
    let (beside, what) = if disk {
        (
            vec![],
            "sign writes the signature partition into it".to_owned(),
        )
    } else {
        (
            vec![tree, root],
            format!(
                "sign writes {} beside it",
                p7s.file_name().unwrap_or(p7s.as_str())
            ),
        )
    };
    input::refuse_in_store(image, &beside, &what, disk, |copy| {
        format!(
            "portable-service sign --key {} --cert {}{} {copy}",
            shell_word(args.key.as_str()),
            shell_word(args.cert.as_str()),
            if args.resign { " --resign" } else { "" }
        )
    })
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
    #[arg(long, default_value_t = check::NEWEST, value_parser = systemd_version)]
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
    /// A policy the images must meet, in systemd's syntax (`root=verity+signed:usr=absent`, as
    /// `systemd-dissect --image-policy` and `RootImagePolicy=` take it): each rule broken is an
    /// error. "signed" counts a signature verified by a --cert (or to be made: --signed-later),
    /// so `--cert CERT --image-policy root=signed` refuses unsigned images.
    #[arg(long, value_name = "POLICY", value_parser = image_policy)]
    image_policy: Option<ImagePolicy>,
    /// The hosts' architecture as systemd names it (x86-64, arm64, ...), which an extension's
    /// ARCHITECTURE= must match (default: this machine's).
    #[arg(long, value_name = "ARCH", default_value_t = check::this_architecture())]
    architecture: String,
    /// The store directory the image's symlinks point into.
    #[arg(long, default_value = "/nix/store")]
    store_dir: Utf8PathBuf,
    /// The report as one JSON document (`"schema"` its version), or, when the images can't
    /// be judged, an error object (`{"schema": 1, "error": {"file", "message", "exit"}}`).
    #[arg(long)]
    json: bool,
    /// Also write the report to this file (a Nix check's output).
    #[arg(long, value_name = "FILE")]
    report: Option<Utf8PathBuf>,
}

/// Runs the check and prints the report; the status of its verdict.
fn check_command(args: CheckArgs) -> Result<u8> {
    use check::tree::Image;
    if let Some(policy) = &args.image_policy {
        check::policy::usable(policy, !args.certs.is_empty(), args.signed_later)
            .map_err(exit::Failure::usage)?;
    }
    let open = |path: &Utf8Path| {
        let file = input::image_file(path)?;
        Image::open_as(&file, &args.architecture, args.systemd).map_err(exit::unreadable(&file))
    };
    let base = open(&args.image)?;
    let extensions = args
        .extensions
        .iter()
        .map(|e| open(e))
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
        image_policy: args.image_policy,
    };
    let report = check::check(&base, &extensions, &options)?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.text()
    };
    // written before it is printed: a report that can't be written is the job not done (1),
    // and prints no verdict that the exit status then contradicts
    if let Some(file) = &args.report {
        std::fs::write(file, &text).map_err(|e| {
            let why = input::io_words(&e);
            exit::Failure::refused(file, format!("cannot write {file}: {why}"))
        })?;
    }
    say(&text)?;
    Ok(if report.accepted {
        exit::OK
    } else {
        exit::REFUSED
    })
}

/// Writes `text` to standard output: one that can't be written (a full disk, a closed pipe) is
/// the job's result not written (1), said as such, not a panic.
fn say(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            exit::Failure {
                exit: exit::REFUSED,
                file: None,
                message: format!("cannot write the output: {}", input::io_words(&e)),
            }
            .into()
        })
}

/// `--systemd`'s value: a version check has rules for, said in a user's words when it isn't.
fn systemd_version(value: &str) -> Result<u32, String> {
    let version: u32 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a systemd version: give its number, as 252"))?;
    if version < check::OLDEST {
        return Err(format!(
            "systemd {version} is older than portable services: they came with systemd {}, the \
             oldest version check has rules for",
            check::OLDEST
        ));
    }
    Ok(version)
}

/// `--image-policy`'s value, read as systemd reads it: an error names the part at fault.
fn image_policy(value: &str) -> Result<ImagePolicy, String> {
    portable_service_rules::image_policy::parse(value)
        .map_err(|e| format!("{value:?} is not an image policy systemd takes: {e}"))
}

/// `--valid-for`'s value: 1 to 3650 days.
fn days(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(days @ 1..=3650) => Ok(days),
        Ok(_) => Err(format!(
            "{value} days: a list is marked fresh for 1 to 3650 days"
        )),
        Err(_) => Err(format!("{value:?} is not a number of days (1 to 3650)")),
    }
}
