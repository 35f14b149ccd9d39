//! `publish`: a directory of built images that hosts update from with systemd-sysupdate, its
//! files listed with their SHA-256 in `SHA256SUMS` (the format `sha256sum` writes, which
//! sysupdate reads) and that list signed, `SHA256SUMS.gpg` (see [`crate::openpgp`]).
//!
//! A feed holds versions of one or more images, each version a set of files named
//! `NAME_VERSION.EXT`: the image (`.raw`), and for a naked image built with `verity = true`
//! its hash tree, root hash and signature beside it (a DDI holds them itself), named as
//! [`FILES`] says. The newest
//! versions of each image are kept, in systemd's order of versions ([`compare_versions`]).
//!
//! Everything is checked before the first write: a directory that isn't a feed, a file the list
//! doesn't name or whose bytes differ from it, an image whose name carries no version, a version
//! published before with other bytes. Then new files are written under temporary names, the new
//! list signed, and only then renamed into place, so a failure leaves the feed as it was.
//!
//! The list may say until when it is fresh ([`BEST_BEFORE`], `publish --valid-for`). A feed's
//! directory is written by whoever can write the web root: publish takes regular files only
//! from it, never follows a symbolic link in it, and has gpg sign the bytes it holds.

use crate::openpgp;
use crate::signing::Cert;
use anyhow::{bail, ensure, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
pub use portable_service_rules::feed::{
    best_before, best_before_line, compare_versions, is_sysupdate_version, split_file_name, Date,
    BEST_BEFORE, EMPTY_SHA256, FILES, SIGNATURE, SUMS,
};
use portable_service_rules::{ddi, verity};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// What one version of an image brings to a feed.
#[derive(Debug)]
pub struct Image {
    pub name: String,
    pub version: String,
    /// (file name in the feed, where it is now)
    pub files: Vec<(String, Utf8PathBuf)>,
}

impl Image {
    /// The image at `path`: its `.raw` file, or a directory holding one `.raw` (a Nix output,
    /// `result`), with the dm-verity files beside a naked image, checked against it (a
    /// signature, when `certs` are given, also made by one of them).
    pub fn find(path: &Utf8Path, certs: &[Cert]) -> Result<Image> {
        let raw = crate::input::image_file(path)?;
        let file = raw.file_name().context("an image file")?.to_owned();
        let versioned = match extension_in_store(&raw) {
            Some(version) => format!("{}_{version}.raw", &file[..file.len() - 4]),
            None => file.clone(),
        };
        let Some((name, version, ".raw")) = split_file_name(&versioned) else {
            bail!(
                "{raw}: the file name {file:?} carries no version: systemd-sysupdate tells \
                 versions apart by it; name it NAME_VERSION.raw (as portableService names \
                 images), with letters, digits and .,_-+ in VERSION"
            );
        };
        ensure!(raw.is_file(), "{raw}: no such image");
        let mut files = vec![(versioned.clone(), raw.clone())];
        if ddi::is_ddi(&raw)? {
            // its table read (hosts would download a disk they can't use), and its signature
            // partition checked when the hosts' certificate is given
            let disk = crate::signing::Disk::read(&raw).map_err(crate::exit::unreadable(&raw))?;
            if !certs.is_empty() {
                crate::signing::verify_disk(&raw, &disk, certs)?;
            }
        } else {
            let mut magic = [0u8; 4];
            let read = std::fs::File::open(&raw).and_then(|mut f| {
                use std::io::Read as _;
                f.read_exact(&mut magic)
            });
            if read.is_err() || &magic != b"hsqs" {
                let why = crate::check::squashfs::why_unreadable(&raw, 0, &"");
                return Err(crate::exit::Failure::unreadable(&raw, why).into());
            }
            let stem = &raw.as_str()[..raw.as_str().len() - 4];
            for (host, feed) in &FILES[1..] {
                let sidecar = Utf8PathBuf::from(format!("{stem}{host}"));
                if sidecar.is_file() {
                    files.push((format!("{name}_{version}{feed}"), sidecar));
                }
            }
        }
        let beside = |ext: &str| files.iter().any(|(n, _)| n.ends_with(ext));
        check_sidecars(&raw, &beside, certs)?;
        if beside(".verity") && !beside(".roothash.p7s") {
            eprintln!(
                "warning: {raw} has a hash tree but no signature beside it: hosts whose \
                 `.sysupdate` has `signed = true` (the default with `verity`) won't take this \
                 version, and 262 refuses an unsigned tree; `portable-service sign` it first"
            );
        }
        Ok(Image {
            name: name.to_owned(),
            version: version.to_owned(),
            files,
        })
    }
}

/// The dm-verity files beside a naked image, checked against it before they travel with it: the
/// hash tree against the image and the root hash, the signature against the root hash (and,
/// with `certs`, its signer against them). A host would otherwise find a mismatch only when
/// the service fails to start.
fn check_sidecars(raw: &Utf8Path, beside: &dyn Fn(&str) -> bool, certs: &[Cert]) -> Result<()> {
    let [tree, root, p7s] = verity::sidecars(raw);
    match (beside(".verity"), beside(".roothash.txt")) {
        (true, true) => {
            let text =
                std::fs::read_to_string(&root).with_context(|| format!("cannot read {root}"))?;
            let hash = verity::parse_root_hash(&text).with_context(|| format!("{root}"))?;
            verity::verify(raw, &tree, &hash).with_context(|| {
                format!("{tree} and {root} don't match {raw}: rebuild them with the image")
            })?;
        }
        (false, false) => {}
        _ => bail!(
            "{raw}: one of {tree} and {root} is missing beside it; hosts need both (or neither)"
        ),
    }
    if beside(".roothash.p7s") {
        ensure!(
            beside(".roothash.txt"),
            "{p7s} is beside {raw} without its root hash"
        );
        if certs.is_empty() {
            crate::signing::covers_root_hash(raw, &p7s)?;
            eprintln!(
                "warning: {p7s} was not checked against a certificate (signatures without \
                 signed attributes, as `portable-service sign` makes them, can't be checked \
                 without one): publish with --cert, the certificate the hosts trust"
            );
        } else {
            crate::signing::verify(raw, &p7s, certs)?;
        }
    }
    Ok(())
}

/// The version of an extension image still in its Nix output: an extension's file is `NAME.raw`
/// (systemd 252 refuses a version in it), its output `HASH-NAME-sysext-VERSION` (or
/// `-confext-`), as nix/make-image.nix names it. A copy elsewhere must be renamed.
fn extension_in_store(raw: &Utf8Path) -> Option<String> {
    let stem = raw.file_name()?.strip_suffix(".raw")?;
    // `result/app.raw`: the output is where the link leads
    let real = raw.canonicalize_utf8().ok()?;
    let output = real.parent()?.file_name()?;
    let (hash, name) = output.split_once('-')?;
    if hash.len() != 32 || stem.contains('_') {
        return None;
    }
    ["sysext", "confext"].into_iter().find_map(|kind| {
        name.strip_prefix(&format!("{stem}-{kind}-"))
            .filter(|v| is_sysupdate_version(v))
            .map(str::to_owned)
    })
}

/// The SHA-256 of an image's file, where the user keeps it (a link to it, as `nix build`
/// leaves `result`, is followed).
fn sha256_of(path: &Utf8Path) -> Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {path}"))?;
    sha256_of_file(file, path)
}

fn sha256_of_file(mut file: std::fs::File, path: &Utf8Path) -> Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("cannot read {path}"))?;
    Ok(verity::hex(&hasher.finalize()))
}

/// `O_NOFOLLOW`, which std names no constant for (and this crate has no libc bindings of its
/// own): its value differs by architecture (libc's `O_NOFOLLOW` for each), so a target not
/// listed here must be looked up, not guessed.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
const O_NOFOLLOW: i32 = 0o400000;
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
const O_NOFOLLOW: i32 = 0o100000;
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("O_NOFOLLOW's value for this target is not known to feed.rs: add it from libc");

/// Whoever may write in a feed's directory (its web root, the bucket it is synced from) could
/// put a symbolic link at a file's name, so that publish read another file as the feed's, or
/// wrote through it to a file outside. A feed's files are opened without following one.
const LINK: &str = "is a symbolic link: a feed holds regular files only";

/// Opens a file of the feed to read: a symbolic link at its name is refused, not followed, and
/// so is anything but a regular file.
fn open_in_feed(path: &Utf8Path) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(_) if path.symlink_metadata().is_ok_and(|m| m.is_symlink()) => bail!("{path} {LINK}"),
        Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {path}"))?;
    ensure!(
        meta.is_file(),
        "{path} is not a regular file: a feed holds regular files only"
    );
    Ok(file)
}

fn sha256_in_feed(path: &Utf8Path) -> Result<String> {
    sha256_of_file(open_in_feed(path)?, path)
}

fn read_in_feed(path: &Utf8Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut open_in_feed(path)?, &mut bytes)
        .with_context(|| format!("cannot read {path}"))?;
    Ok(bytes)
}

/// Makes the file a publish stages at `path` (a hidden name in the feed), mode 0644: a stale
/// one, left by a publish cut short, is removed first (unlinking a symbolic link removes the
/// link, not what it leads to), and the new one is made only if nothing is at its name
/// (`O_CREAT|O_EXCL`, which no symbolic link passes, and `O_NOFOLLOW` besides), so that nothing
/// put there meanwhile is written through.
fn create_staged(path: &Utf8Path) -> Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove the stale {path}")),
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot make {path}"))?;
    // the mode whatever the umask: the web server reads these files
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot make {path} readable"))?;
    Ok(file)
}

/// Stages `bytes` at `path` ([`create_staged`]), synced.
fn write_staged(path: &Utf8Path, bytes: &[u8]) -> Result<()> {
    let mut file = create_staged(path)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {path}"))
}

/// Writes what it is given to a file and hashes it on the way: what is staged is what was
/// hashed, with no second read of the staged file.
struct HashingWriter {
    file: std::fs::File,
    hasher: Sha256,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Refuses a feed directory that is a symbolic link or that holds anything but regular files
/// (a symbolic link above all, see [`LINK`]), naming it. A directory that doesn't exist yet
/// passes.
fn check_regular(dir: &Utf8Path) -> Result<()> {
    // `feed/` would name what a link `feed` leads to
    let trimmed = dir.as_str().trim_end_matches('/');
    let itself = Utf8Path::new(if trimmed.is_empty() { "/" } else { trimmed });
    match itself.symlink_metadata() {
        Ok(meta) if meta.is_symlink() => bail!(
            "{dir} is a symbolic link: publish into the feed's directory itself (a link could be \
             turned elsewhere while publish writes)"
        ),
        Ok(meta) => ensure!(meta.is_dir(), "{dir} is not a directory"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {dir}")),
    }
    for entry in dir
        .read_dir_utf8()
        .with_context(|| format!("cannot read {dir}"))?
    {
        let entry = entry.with_context(|| format!("cannot read {dir}"))?;
        // the entry's own type: a link is not followed
        let kind = entry
            .file_type()
            .with_context(|| format!("cannot read {}", entry.path()))?;
        let name = entry.file_name();
        if kind.is_symlink() {
            bail!("{dir}/{name} {LINK}");
        }
        ensure!(
            kind.is_file(),
            "{dir}/{name} is not a regular file: a feed holds regular files only"
        );
    }
    Ok(())
}

/// The names and hashes a `SHA256SUMS` at `sums` in the feed lists.
fn read_sums(sums: &Utf8Path) -> Result<BTreeMap<String, String>> {
    parse_sums(sums, &read_in_feed(sums)?)
}

/// The names and hashes in `list`, the bytes of the `SHA256SUMS` at `sums`.
fn parse_sums(sums: &Utf8Path, list: &[u8]) -> Result<BTreeMap<String, String>> {
    parse_list(sums, list).map(|(files, _)| files)
}

/// The names and hashes in `list`, the bytes of the `SHA256SUMS` at `sums`, and the days its
/// `BEST-BEFORE-` lines name (lines that name no file: see [`best_before_line`]).
fn parse_list(sums: &Utf8Path, list: &[u8]) -> Result<(BTreeMap<String, String>, Vec<Date>)> {
    let text = std::str::from_utf8(list).with_context(|| format!("{sums} is not UTF-8 text"))?;
    let mut listed = BTreeMap::new();
    let mut best_before = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // `HASH  NAME` (text mode) or `HASH *NAME` (binary), as sha256sum writes them
        let parsed = line
            .split_once(' ')
            .map(|(hash, rest)| (hash, rest.strip_prefix([' ', '*']).unwrap_or("")))
            .filter(|(hash, name)| {
                hash.len() == 64
                    && hash.chars().all(|c| c.is_ascii_hexdigit())
                    && !name.is_empty()
                    && !name.contains('/')
                    && !name.starts_with('.')
            });
        let Some((hash, name)) = parsed else {
            bail!("{sums}, line {}: not `SHA256  FILE`: {line:?}", n + 1);
        };
        if let Some(date) = name.strip_prefix(BEST_BEFORE) {
            let date = Date::parse(date)
                .filter(|_| hash.eq_ignore_ascii_case(EMPTY_SHA256))
                .with_context(|| {
                    format!(
                        "{sums}, line {}: not a BEST-BEFORE line as systemd reads it \
                         (`{EMPTY_SHA256}  {BEST_BEFORE}YYYY-MM-DD`, the SHA-256 of nothing and \
                         a day): {line:?}",
                        n + 1
                    )
                })?;
            best_before.push(date);
            continue;
        }
        listed.insert(name.to_owned(), hash.to_ascii_lowercase());
    }
    Ok((listed, best_before))
}

/// A feed directory as it is: its files and their hashes, all checked against `SHA256SUMS`.
#[derive(Debug)]
pub struct Feed {
    pub dir: Utf8PathBuf,
    /// file name -> lowercase hex SHA-256
    pub sums: BTreeMap<String, String>,
    /// The days the list's `BEST-BEFORE-` lines name (publish writes one at most).
    pub best_before: Vec<Date>,
}

/// The bytes of the feed's list, if it has one: read once, so that the bytes whose signature
/// is checked are the bytes then parsed (a list swapped in between is never seen).
fn read_list(dir: &Utf8Path) -> Result<Option<Vec<u8>>> {
    let sums = dir.join(SUMS);
    match sums.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => read_in_feed(&sums).map(Some),
    }
}

impl Feed {
    /// Reads and checks a feed; a directory that doesn't exist or is empty is an empty feed.
    pub fn open(dir: &Utf8Path) -> Result<Feed> {
        check_regular(dir)?;
        let list = read_list(dir)?;
        Feed::read(dir, list.as_deref())
    }

    /// The feed in `dir` whose list holds `list` (as [`read_list`] read it).
    fn read(dir: &Utf8Path, list: Option<&[u8]>) -> Result<Feed> {
        let mut feed = Feed {
            dir: dir.to_owned(),
            sums: BTreeMap::new(),
            best_before: Vec::new(),
        };
        if dir.symlink_metadata().is_err() {
            return Ok(feed);
        }
        let mut present = BTreeSet::new();
        for entry in dir
            .read_dir_utf8()
            .with_context(|| format!("cannot read {dir}"))?
        {
            let entry = entry.with_context(|| format!("cannot read {dir}"))?;
            present.insert(entry.file_name().to_owned());
        }
        if present.is_empty() {
            return Ok(feed);
        }
        let sums = dir.join(SUMS);
        let Some(list) = list else {
            bail!(
            "{dir} is not a feed: it has files ({}) but no {SUMS}; publish into an empty or new \
             directory",
            present
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
            );
        };
        (feed.sums, feed.best_before) = parse_list(&sums, list)?;
        for name in feed.sums.keys() {
            ensure!(
                present.contains(name),
                "{sums} lists {name}, which is not in {dir}"
            );
        }
        for name in &present {
            if name != SUMS && name != SIGNATURE {
                ensure!(
                    feed.sums.contains_key(name),
                    "{dir}/{name} is not listed in {SUMS}: a feed holds only what its list \
                     names (remove it, or publish into another directory)"
                );
            }
        }
        for (name, hash) in &feed.sums {
            let file = dir.join(name);
            ensure!(
                &sha256_in_feed(&file)? == hash,
                "{file} does not match its hash in {SUMS}: the feed was changed after it was \
                 published"
            );
        }
        Ok(feed)
    }
}

/// What `publish` does to a feed.
pub struct Options<'a> {
    /// The feed's key, imported (so a bad key is refused before anything is read or written).
    pub signer: &'a openpgp::Signer,
    /// Versions kept of each image (the newest).
    pub keep: usize,
    /// Sign a feed whose list this key didn't sign (another key's, or none): the list is then
    /// trusted as it is, checked against its files only.
    pub new_key: bool,
    /// The day the list says it is stale from ([`BEST_BEFORE`]; [`best_before`] reckons it):
    /// `None` writes no such line, and a list that has one is written again without it.
    pub best_before: Option<Date>,
}

/// What `publish` did (`publish --json` writes it).
#[derive(Debug, Default, serde::Serialize)]
pub struct Published {
    pub added: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    /// Who signed the new list; empty when the list stayed as it was.
    pub signer: String,
    /// What was done about a publish that was cut short (killed, power lost) before this one.
    pub recovered: Option<String>,
}

/// The hidden name a file has while a publish stages it: no list names it, no host fetches it.
fn staged(name: &str) -> String {
    format!(".{name}.publishing")
}

/// The names a publish will remove once the new list is in place, written before it renames
/// anything, so that one cut short after the list was renamed still gets them removed.
const REMOVING: &str = ".removing.publishing";

/// Waits for the feed's lock (the directory's own flock): one publish at a time.
fn lock(dir: &Utf8Path) -> Result<std::fs::File> {
    let handle = std::fs::File::open(dir).with_context(|| format!("cannot open {dir}"))?;
    match handle.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!("waiting for another publish into {dir}");
            handle
                .lock()
                .with_context(|| format!("cannot lock {dir}"))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {dir}"));
        }
    }
    Ok(handle)
}

fn has_hash(path: &Utf8Path, hash: &str) -> bool {
    sha256_in_feed(path).is_ok_and(|h| h == hash)
}

/// Finishes or undoes a publish that was cut short (killed, power lost) between its first write
/// and its last: forward when its new list is signed by this key and every file it names is
/// there (in place or staged), so the feed is as that publish meant it; otherwise back to the
/// list in place, removing what it had renamed in that no list names. What was done, if
/// anything.
fn recover(dir: &Utf8Path, signer: &openpgp::Signer) -> Result<Option<String>> {
    let mut done = None;
    let staged_sums = dir.join(staged(SUMS));
    let staged_sig = dir.join(staged(SIGNATURE));
    if staged_sums.is_file() {
        // the signature may have been renamed into place already (it goes first)
        let sig = if staged_sig.is_file() {
            staged_sig.clone()
        } else {
            dir.join(SIGNATURE)
        };
        let staged_list = read_in_feed(&staged_sums).ok();
        let listed = staged_list
            .as_deref()
            .and_then(|list| parse_sums(&staged_sums, list).ok());
        let complete = listed.as_ref().is_some_and(|l| {
            l.iter()
                .all(|(n, h)| has_hash(&dir.join(n), h) || has_hash(&dir.join(staged(n)), h))
        });
        let signed = staged_list
            .as_deref()
            .is_some_and(|list| signer.verify(list, &sig).is_ok());
        match listed {
            Some(listed) if complete && signed => {
                for (name, hash) in &listed {
                    let from = dir.join(staged(name));
                    if from.is_file() && !has_hash(&dir.join(name), hash) {
                        std::fs::rename(&from, dir.join(name))?;
                    }
                }
                if staged_sig.is_file() {
                    std::fs::rename(&staged_sig, dir.join(SIGNATURE))?;
                }
                std::fs::rename(&staged_sums, dir.join(SUMS))?;
                done = Some("finished the publish that was cut short".to_owned());
            }
            listed => {
                let current = if dir.join(SUMS).is_file() {
                    read_sums(&dir.join(SUMS))?
                } else {
                    BTreeMap::new()
                };
                for (name, hash) in listed.iter().flatten() {
                    if !current.contains_key(name) && has_hash(&dir.join(name), hash) {
                        std::fs::remove_file(dir.join(name))?;
                    }
                }
                done = Some("undid the publish that was cut short".to_owned());
            }
        }
    }
    let removing = dir.join(REMOVING);
    if removing.is_file() {
        let current = read_sums(&dir.join(SUMS)).unwrap_or_default();
        let names = read_in_feed(&removing)?;
        for name in String::from_utf8_lossy(&names).lines() {
            let file = dir.join(name);
            if !name.is_empty() && !name.contains('/') && !current.contains_key(name) {
                let _ = std::fs::remove_file(file);
            }
        }
        done.get_or_insert_with(|| "finished the removals of a publish cut short".to_owned());
    }
    for entry in dir.read_dir_utf8()? {
        let name = entry?.file_name().to_owned();
        if name.starts_with('.') && name.ends_with(".publishing") {
            std::fs::remove_file(dir.join(&name))?;
        }
    }
    Ok(done)
}

/// Refuses to go on from a list this key didn't sign (unless `new_key`): a list changed in
/// the web root, with a file slipped in beside it, would otherwise be signed again and go to
/// every host. `list` is the list's bytes as read once: those checked are those then parsed.
fn check_signed(dir: &Utf8Path, list: Option<&[u8]>, options: &Options) -> Result<()> {
    let (sums, sig) = (dir.join(SUMS), dir.join(SIGNATURE));
    let Some(list) = list.filter(|_| !options.new_key) else {
        return Ok(());
    };
    ensure!(
        sig.is_file(),
        "{sums} has no signature beside it ({SIGNATURE}): it can't be trusted as published;          if it is right, publish with --new-key to sign it as it is"
    );
    options.signer.verify(list, &sig).with_context(|| {
        format!(
            "{sums} is not as {} signed it: it was changed after it was published, or another              key signed it; check the feed, and publish with --new-key only if the feed changed              keys",
            options.signer.fingerprint()
        )
    })
}

/// Adds `images` to the feed in `dir` (made if missing), keeps the newest `keep` versions of
/// each image, and writes and signs the new list. Nothing is written unless all is well.
pub fn publish(dir: &Utf8Path, images: &[Image], options: &Options) -> Result<Published> {
    ensure!(options.keep >= 1, "--keep must be at least 1");
    check_regular(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {dir}"))?;
    let _lock = lock(dir)?;
    // again, now that no other publish changes it: before anything in it is read or recovered
    check_regular(dir)?;
    let mut published = Published {
        recovered: recover(dir, options.signer)?,
        ..Published::default()
    };
    let list = read_list(dir)?;
    check_signed(dir, list.as_deref(), options)?;
    let feed = Feed::read(dir, list.as_deref())?;
    let mut sums = feed.sums.clone();
    // file name -> (source, hash): what is new
    let mut new: BTreeMap<String, (Utf8PathBuf, String)> = BTreeMap::new();
    for image in images {
        for (name, source) in &image.files {
            let hash = sha256_of(source)?;
            if let Some((other, other_hash)) = new.get(name) {
                ensure!(
                    *other_hash == hash,
                    "{source} and {other} are both {name} (version {} of {}) with different \
                     bytes",
                    image.version,
                    image.name
                );
                continue;
            }
            match feed.sums.get(name) {
                Some(old) if *old == hash => published.unchanged.push(name.clone()),
                Some(_) => bail!(
                    "{dir}/{name} was published with other bytes than {source}: version {} of \
                     {} is in the feed already, and hosts that have it would never fetch the \
                     new bytes; publish them as a new version",
                    image.version,
                    image.name
                ),
                None => {
                    sums.insert(name.clone(), hash.clone());
                    new.insert(name.clone(), (source.clone(), hash));
                }
            }
        }
    }

    // the newest `keep` versions of each image stay
    let mut versions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for name in sums.keys() {
        if let Some((image, version, _)) = split_file_name(name) {
            versions.entry(image).or_default().insert(version);
        }
    }
    let mut dropped: BTreeSet<(String, String)> = BTreeSet::new();
    for (image, set) in &versions {
        let mut ordered: Vec<&str> = set.iter().copied().collect();
        ordered.sort_by(|a, b| compare_versions(b, a));
        for old in ordered.iter().skip(options.keep) {
            dropped.insert((image.to_string(), old.to_string()));
        }
    }
    for image in images {
        ensure!(
            !dropped.contains(&(image.name.clone(), image.version.clone())),
            "version {} of {} is older than the {} newest in {dir}, which are kept: it would be \
             dropped at once",
            image.version,
            image.name,
            options.keep
        );
    }
    let removed: Vec<String> = sums
        .keys()
        .filter(|n| {
            split_file_name(n).is_some_and(|(i, v, _)| dropped.contains(&(i.into(), v.into())))
        })
        .cloned()
        .collect();
    for name in &removed {
        sums.remove(name);
    }

    let best_before: Vec<Date> = options.best_before.into_iter().collect();
    if new.is_empty() && removed.is_empty() && feed.best_before == best_before {
        // nothing to add or drop, no other day: the list and its signature stay as they are
        return Ok(published);
    }

    // written under temporary names; renamed into place once the list is signed
    let mut staged_files = Staged::default();
    for (name, (source, hash)) in &new {
        let tmp = dir.join(staged(name));
        staged_files.files.push(tmp.clone());
        let mut from =
            std::fs::File::open(source).with_context(|| format!("cannot read {source}"))?;
        let mut to = HashingWriter {
            file: create_staged(&tmp)?,
            hasher: Sha256::new(),
        };
        std::io::copy(&mut from, &mut to)
            .and_then(|_| to.file.sync_all())
            .with_context(|| format!("cannot copy {source} to {tmp}"))?;
        ensure!(
            verity::hex(&to.hasher.finalize()) == *hash,
            "{source} changed while it was copied into the feed"
        );
    }
    let list: String = best_before
        .iter()
        .map(|date| best_before_line(*date))
        .chain(sums.iter().map(|(name, hash)| format!("{hash}  {name}\n")))
        .collect();
    let sums_tmp = dir.join(staged(SUMS));
    let sig_tmp = dir.join(staged(SIGNATURE));
    staged_files.files.push(sums_tmp.clone());
    staged_files.files.push(sig_tmp.clone());
    // gpg signs the bytes held here, not a file in the feed that could change under it
    let signature = options.signer.sign(list.as_bytes())?;
    write_staged(&sums_tmp, list.as_bytes())?;
    write_staged(&sig_tmp, &signature)?;
    published.signer = options.signer.fingerprint().to_owned();
    let removing = dir.join(REMOVING);
    if !removed.is_empty() {
        staged_files.files.push(removing.clone());
        write_staged(&removing, removed.join("\n").as_bytes())?;
    }
    sync_dir(dir)?;
    cut_short_at("staged");

    // from here on a publish cut short is finished by the next (see [`recover`])
    for name in new.keys() {
        std::fs::rename(dir.join(staged(name)), dir.join(name))?;
        published.added.push(name.clone());
        cut_short_at("renamed-one");
    }
    // the signature first: a host reading in between sees a list that doesn't match it and
    // refuses this one update, rather than taking a list that no signature covers
    std::fs::rename(&sig_tmp, dir.join(SIGNATURE))?;
    cut_short_at("signature");
    std::fs::rename(&sums_tmp, dir.join(SUMS))?;
    sync_dir(dir)?;
    cut_short_at("list");
    staged_files.files.clear();
    for name in &removed {
        std::fs::remove_file(dir.join(name)).with_context(|| format!("cannot remove {name}"))?;
        cut_short_at("removed-one");
    }
    if removing.is_file() {
        std::fs::remove_file(&removing)?;
    }
    sync_dir(dir)?;
    published.removed = removed;
    Ok(published)
}

/// Where the tests cut a publish short (tests/feed.rs): with
/// `PORTABLE_SERVICE_PUBLISH_CUT_AT=POINT` the process aborts there, as a kill or a power cut
/// would end it (nothing cleans up).
fn cut_short_at(point: &str) {
    if std::env::var_os("PORTABLE_SERVICE_PUBLISH_CUT_AT").is_some_and(|p| p == point) {
        std::process::abort();
    }
}

fn sync_dir(dir: &Utf8Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {dir}"))
}

/// Temporary files of a publish that failed midway, removed when it returns.
#[derive(Default)]
struct Staged {
    files: Vec<Utf8PathBuf>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf8(path: &std::path::Path) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(path.to_owned()).unwrap()
    }

    /// A link put at a staged name after publish looked (so past [`check_regular`]): the file
    /// it leads to outside the feed is not written through; the link is replaced.
    #[test]
    fn a_link_at_a_staged_name_is_not_written_through() {
        let work = tempfile::tempdir().unwrap();
        let feed = utf8(&work.path().join("feed"));
        std::fs::create_dir(&feed).unwrap();
        let victim = work.path().join("victim");
        std::fs::write(&victim, "not the feed's\n").unwrap();
        let staged_sums = feed.join(staged(SUMS));
        std::os::unix::fs::symlink(&victim, &staged_sums).unwrap();
        write_staged(&staged_sums, b"the list\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"not the feed's\n");
        let meta = staged_sums.symlink_metadata().unwrap();
        assert!(meta.is_file(), "{meta:?}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        assert_eq!(std::fs::read(&staged_sums).unwrap(), b"the list\n");

        // a dangling link: nothing made where it leads
        let nowhere = work.path().join("nowhere");
        let staged_sig = feed.join(staged(SIGNATURE));
        std::os::unix::fs::symlink(&nowhere, &staged_sig).unwrap();
        write_staged(&staged_sig, b"sig").unwrap();
        assert!(!nowhere.exists());
    }

    /// At least `days` days: to the next midnight after now + days, or that instant itself.
    #[test]
    fn best_before_is_the_first_midnight_at_least_days_on() {
        // 2023-11-14 22:13:20 UTC
        assert_eq!(best_before(1_700_000_000, 1).to_string(), "2023-11-16");
        assert_eq!(best_before(1_700_000_000, 30).to_string(), "2023-12-15");
        // 2023-11-14 00:00:00 UTC exactly, and one second later
        assert_eq!(best_before(1_699_920_000, 1).to_string(), "2023-11-15");
        assert_eq!(best_before(1_699_920_001, 1).to_string(), "2023-11-16");
        assert_eq!(best_before(1_699_920_000, 3650).to_string(), "2033-11-11");
    }

    #[test]
    fn a_best_before_line_names_no_file() {
        let list = format!(
            "{}{}  demo_1.raw\n",
            best_before_line(Date::parse("2030-01-02").unwrap()),
            "ab".repeat(32)
        );
        let (files, days) = parse_list(Utf8Path::new("SHA256SUMS"), list.as_bytes()).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["demo_1.raw"]);
        assert_eq!(days, [Date::parse("2030-01-02").unwrap()]);
        for bad in [
            format!("{}  BEST-BEFORE-2030-01-02\n", "ab".repeat(32)),
            format!("{EMPTY_SHA256}  BEST-BEFORE-2030-02-30\n"),
        ] {
            let err = parse_list(Utf8Path::new("SHA256SUMS"), bad.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("not a BEST-BEFORE line"), "{err}");
        }
    }

    /// Reading a feed's file never follows a link at its name.
    #[test]
    fn a_link_in_the_feed_is_not_read_through() {
        let work = tempfile::tempdir().unwrap();
        let feed = utf8(&work.path().join("feed"));
        std::fs::create_dir(&feed).unwrap();
        std::fs::write(work.path().join("outside"), "x").unwrap();
        std::os::unix::fs::symlink(work.path().join("outside"), feed.join(SUMS)).unwrap();
        let err = read_in_feed(&feed.join(SUMS)).unwrap_err().to_string();
        assert_eq!(err, format!("{feed}/{SUMS} {LINK}"));
        let err = check_regular(&feed).unwrap_err().to_string();
        assert_eq!(err, format!("{feed}/{SUMS} {LINK}"));
    }
}
