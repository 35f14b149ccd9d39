//! A Discoverable Disk Image's partitions, as systemd's dissect code takes them: the ones it
//! uses ([`chosen_of`], which [`super::policy`] judges too), their types and flags, the hash tree
//! in the root-verity partition and the signature partition, and what each systemd version
//! does with them.

use super::report::{self, Report};
use super::tree::Image;
use super::verity::{check_signer, verity_error};
use super::versions::{rules_of, CHECKS_SIGNATURES};
use super::Options;
use crate::signing::Disk;
use camino::Utf8Path;
use portable_service_rules::ddi;

/// A Discoverable Disk Image's partitions, as systemd's dissect code takes them: their types
/// and flags, the hash tree in its root-verity partition against the root partition and the root
/// hash the two partitions' UUIDs carry, and the signature partition against the hosts'
/// certificates (when `options.certs` says which).
pub(super) fn check_disk(r: &mut Report, image: &Image, table: &ddi::Table, options: &Options) {
    let path = &image.path;
    let chosen = chosen_of(image, table);
    let runs = chosen
        .as_ref()
        .map_or(options.architecture.as_str(), |c| c.arch.name);
    for p in &table.partitions {
        r.partitions.push(partition_report(image, p));
        judge_partition(r, path, p, runs, options);
    }
    let chosen = match chosen {
        Ok(c) => c,
        Err(e) => return verity_error(r, format!("{path}: {e:#}")),
    };
    if chosen.arch.name != options.architecture {
        foreign_root(r, path, &chosen, &options.architecture);
    }
    if chosen.verity.is_none() {
        if !options.certs.is_empty() {
            r.verity.push(format!(
                "{path}: no root-verity partition: not signed, and systemd runs it without \
                 dm-verity (build it with format = \"ddi\" to have one)"
            ));
        }
        return;
    }
    let disk = match Disk::of(path, table, chosen) {
        Ok(d) => d,
        Err(e) => return verity_error(r, format!("{e:#}")),
    };
    let signed = match disk.signature(path) {
        Ok(s) => s.is_some(),
        Err(e) => return verity_error(r, format!("{e:#}")),
    };
    if rules_of(options.systemd) < CHECKS_SIGNATURES {
        return unchecked(r, path, &disk, signed, options.systemd);
    }
    if tree_matches(r, path, &disk, signed, options.systemd) {
        check_disk_signature(r, path, &disk, signed, options);
    }
}

/// One partition of `image` as the report lists it.
fn partition_report(image: &Image, p: &ddi::Partition) -> report::PartitionReport {
    report::PartitionReport {
        image: image.name.clone(),
        number: p.number,
        designator: p.designator.map(|(d, _)| d.name().to_owned()),
        architecture: p.designator.map(|(_, a)| a.name.to_owned()),
        type_uuid: ddi::uuid_string(&p.type_uuid),
        uuid: ddi::uuid_string(&p.uuid),
        label: p.label.clone(),
        read_only: p.read_only(),
        bytes: p.range.end - p.range.start,
    }
}

/// A partition systemd passes over (another architecture's than the one it `runs`, or a type
/// it doesn't use), or one it uses without GPT's read-only flag.
fn judge_partition(
    r: &mut Report,
    path: &Utf8Path,
    p: &ddi::Partition,
    runs: &str,
    options: &Options,
) {
    match p.designator {
        Some((d, arch)) if arch.name != runs => r.advice(&format!(
            "{path}: partition {} is a {} partition for {}, and hosts of {} run {runs}'s: \
             systemd passes it over",
            p.number,
            d.name(),
            arch.name,
            options.architecture
        )),
        Some((d, _)) if !p.read_only() => {
            // measured: 262's image policy for portable services wants the flag
            let message = format!(
                "{path}: partition {} ({}) lacks GPT's read-only flag: systemd 262 fails \
                 its services with 226/NAMESPACE (\"Operation not possible due to RF-kill\")",
                p.number,
                d.name()
            );
            if rules_of(options.systemd) >= 262 {
                verity_error(r, message)
            } else {
                r.advice(&message)
            }
        }
        Some(_) => {}
        None => r.advice(&format!(
            "{path}: partition {} (type {}) is not one systemd uses for a portable service",
            p.number,
            ddi::uuid_string(&p.type_uuid)
        )),
    }
}

/// A root partition for another architecture than the hosts', which systemd takes when the
/// disk has none for theirs.
fn foreign_root(r: &mut Report, path: &Utf8Path, chosen: &ddi::Chosen, architecture: &str) {
    r.advice(&format!(
        "{path}: its root partition {} is for {}, and systemd on {} takes it as the disk \
         has no root for {} itself: its programs need a CPU (or an emulator) of {}",
        chosen.root.number, chosen.arch.name, architecture, architecture, chosen.arch.name
    ));
}

/// A systemd before [`CHECKS_SIGNATURES`], which uses neither the disk's hash tree nor its
/// signature: advice only, whatever they say.
fn unchecked(r: &mut Report, path: &Utf8Path, disk: &Disk, signed: bool, v: u32) {
    // measured on 247: signed or not, changed or not, the DDI runs without dm-verity
    let said = if signed {
        format!(
            "its signature partition is ignored: systemd {v} knows none (from 250 on it \
             does), so a signature the host ignores is no protection"
        )
    } else {
        "not signed".to_owned()
    };
    let checked = match disk.verify_tree(path) {
        Ok(_) => "its hash tree matches".to_owned(),
        Err(e) => format!("{e:#}"),
    };
    r.advice(&format!(
        "{path}: {said}; {checked}; systemd {v} runs it without dm-verity, unchecked"
    ))
}

/// Whether the root-verity partition matches the root partition and the root hash the UUIDs
/// carry; when not, what the systemd version does with it is said, and the signature no more.
fn tree_matches(r: &mut Report, path: &Utf8Path, disk: &Disk, signed: bool, v: u32) -> bool {
    match disk.verify_tree(path) {
        Ok(tree) => {
            r.verity.push(format!(
                "{path}: its root-verity partition matches its root partition and the root \
                 hash its partition UUIDs carry, {}",
                tree.root_hash_hex()
            ));
            true
        }
        // unsigned, 252 to 257 use no tree at all (measured): the changed file system runs
        Err(e) if !signed && rules_of(v) < 262 => {
            r.advice(&format!(
                "{e:#}; not signed, systemd {v} doesn't check it and runs it as it is"
            ));
            false
        }
        // measured: attached, the service fails reading a changed block
        Err(e) => {
            verity_error(
                r,
                format!(
                    "{e:#}; systemd attaches it, and the service fails when it reads a changed \
                     block (the kernel: data block N is corrupted)"
                ),
            );
            false
        }
    }
}

/// The disk's signature partition: whether there is one, by whom, and what the systemd
/// version does without one.
fn check_disk_signature(r: &mut Report, path: &Utf8Path, disk: &Disk, signed: bool, o: &Options) {
    match (signed, o.certs.is_empty()) {
        (true, false) => check_signer(r, path, o, |certs| {
            crate::signing::verify_disk(path, disk, certs).cloned()
        }),
        (true, true) => r.verity.push(format!(
            "{path}: signed; by whom is not checked (give the hosts' certificates with \
             --cert). A host without the signer's certificate in /etc/verity.d/ refuses to \
             start its services (226/NAMESPACE)"
        )),
        (false, false) => verity_error(
            r,
            format!(
                "{path} is not signed (no root-verity-sig partition), and certificates were given"
            ),
        ),
        (false, true) => r.verity.push(format!(
            "{path}: not signed{}: systemd {} {}",
            if o.signed_later {
                " yet (--signed-later)"
            } else {
                ""
            },
            o.systemd,
            unsigned_disk(o.systemd)
        )),
    }
}

/// The partitions of `table` systemd uses, as [`Image::open_as`] found them: the root,
/// and the root-verity and root-verity-sig partitions it pairs with it.
pub(super) fn chosen_of<'t>(
    image: &Image,
    table: &'t ddi::Table,
) -> anyhow::Result<ddi::Chosen<'t>> {
    use anyhow::Context as _;
    use portable_service_rules::dissect::Kind;
    let find = |kind: Kind| -> anyhow::Result<Option<&'t ddi::Partition>> {
        let Some(m) = image
            .used
            .iter()
            .find(|m| m.kind == kind && m.designator == kind.name())
        else {
            return Ok(None);
        };
        // the same partition in both readings: number, place, type and UUID
        let p = table.partitions.iter().find(|p| {
            Some(p.number) == m.number
                && p.range == m.range
                && m.uuid == Some(p.uuid)
                && portable_service_rules::dissect::types::kind_of(&p.type_uuid)
                    .is_some_and(|(k, _)| k == kind)
        });
        p.map(Some).with_context(|| {
            format!(
                "partition {} reads differently by libblkid's rules and by the GPT's own",
                m.number.unwrap_or(0)
            )
        })
    };
    let root = find(Kind::Root)?.context("systemd finds no root partition in it")?;
    let (_, arch) = root
        .designator
        .context("its root partition's type names an architecture Nix doesn't build for")?;
    Ok(ddi::Chosen {
        arch,
        root,
        verity: find(Kind::RootVerity)?,
        signature: find(Kind::RootVeritySig)?,
    })
}

/// What systemd does with a DDI without a signature partition, measured on 252, 254, 257 and
/// 262 (tests/tests/acceptance/ddi.rs): all four run it; 252 to 257 have no root hash for it and
/// mount the file system unchecked, 262 takes the root hash from the partitions' UUIDs and
/// checks every block against the tree.
fn unsigned_disk(systemd: u32) -> &'static str {
    if rules_of(systemd) >= 262 {
        "runs it with dm-verity, the root hash taken from its partitions' UUIDs (its blocks are \
         checked, but anyone who can write the file can make a matching disk)"
    } else {
        "runs it without dm-verity: nothing gives it the root hash (its blocks are not checked)"
    }
}
