//! `check --image-policy`: what systemd would use of each image (its partitions and their
//! protection, by the rules of the systemd version judged), judged by an image policy with
//! `portable_service_rules::image_policy`, and said in the report. A broken rule is an error:
//! the policy is the user's gate, whether or not the hosts' systemd takes policies itself.
//!
//! "Signed" means signed by a certificate given (`--cert`), or to be signed after the build
//! (`--signed-later`, an image's `.check`): a gate that requires a signature requires one the
//! hosts trust. A policy that can only be judged so is refused without either ([`usable`]).

use super::report::{Finding, PolicyImage, PolicyPartition, PolicyReport, Report};
use super::tree::Image;
use super::versions::{rules_of, CHECKS_SIGNATURES, READS_HASH_TREE_BESIDE};
use super::Options;
use portable_service_rules::ddi;
use portable_service_rules::image_policy::{
    judge_disk, judge_naked, Designator, ImagePolicy, Protection, State,
};
use portable_service_rules::verity::sidecars;

/// From this version on, systemd takes image policies (`systemd-dissect --image-policy=`,
/// `RootImagePolicy=`; NEWS of 254). portablectl has none; portabled pins one from 260 on.
pub const TAKES_POLICIES: u32 = 254;
/// From this version on, systemd sets up dm-verity for a DDI without a signature, the root hash
/// taken from its partitions' UUIDs (measured: 252 to 257 mount it without).
const UNSIGNED_DISK_VERITY: u32 = 262;
/// GPT's growfs partition flag (bit 59), which systemd-repart sets for a file system to grow.
const GROWFS: u64 = 1 << 59;

/// Refuses a policy that wants a signature where check can't judge one: without the hosts'
/// certificates, a signature can't be told from one anybody made.
pub fn usable(policy: &ImagePolicy, certs_given: bool, signed_later: bool) -> Result<(), String> {
    let wants = policy.wants_signature();
    if wants.is_empty() || certs_given || signed_later {
        return Ok(());
    }
    Err(format!(
        "--image-policy {}: the policy wants {} signed, and a signature can only be judged \
         against the certificates the hosts trust: give them with --cert (or --signed-later \
         for an image signed after the build)",
        policy.text(),
        wants
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join(" and ")
    ))
}

/// Judges the base and each extension by `options.image_policy`, if there is one: each broken
/// rule an error, and what each image has in the report.
pub fn judge(r: &mut Report, images: &[&Image], options: &Options) {
    let Some(policy) = &options.image_policy else {
        return;
    };
    if rules_of(options.systemd) < TAKES_POLICIES {
        r.advice(&format!(
            "--image-policy is check's gate here: systemd {} takes no image policy (from \
             {TAKES_POLICIES} on systemd-dissect and RootImagePolicy= do; portablectl has none)",
            options.systemd
        ));
    }
    let mut report = PolicyReport {
        policy: policy.text().to_owned(),
        images: Vec::new(),
    };
    for image in images {
        let verified = r.signed_by_hosts.contains(&image.path.to_string());
        let Some(used) = used_of(image, verified, options) else {
            continue; // no root for the host: an error already
        };
        let violations = match &used {
            Used::Naked(root) => judge_naked(policy, root),
            Used::Disk(partitions) => judge_disk(policy, partitions),
        };
        for v in &violations {
            r.error(Finding {
                stage: "image-policy",
                message: format!("{}: {v}", image.path),
            });
        }
        report.images.push(PolicyImage {
            image: image.path.to_string(),
            partitions: used.partitions().iter().map(partition_report).collect(),
            violations,
        });
    }
    r.image_policy = Some(report);
}

/// What systemd uses of an image.
enum Used {
    /// One file system, taken for root.
    Naked(State),
    Disk(Vec<(Designator, State)>),
}

impl Used {
    fn partitions(&self) -> Vec<(Designator, State)> {
        match self {
            Used::Naked(root) => vec![(Designator::Root, root.clone())],
            Used::Disk(p) => p.clone(),
        }
    }
}

/// What systemd would use of `image` on the hosts, by the rules of `options.systemd`:
/// `verified`, whether a certificate given verified its signature. For a DDI, the root
/// partition `ddi::Table::for_host` chooses and its hash tree's and signature's partitions;
/// `None` when it has none for the host. (The one place that says which partitions there are:
/// a reader that finds usr partitions too is used here.)
fn used_of(image: &Image, verified: bool, options: &Options) -> Option<Used> {
    let Some(table) = &image.disk else {
        return Some(Used::Naked(naked_root(image, verified, options)));
    };
    let chosen = super::disk::chosen_of(image, table).ok()?;
    let (protection, why) = disk_protection(&chosen, verified, options);
    let state = |p: &ddi::Partition, protection| State {
        protection,
        read_only: p.read_only(),
        growfs: p.flags & GROWFS != 0,
        why: None,
    };
    let mut used = vec![(
        Designator::Root,
        State {
            why,
            ..state(chosen.root, protection)
        },
    )];
    if let Some(p) = chosen.verity {
        used.push((Designator::RootVerity, state(p, Protection::Unprotected)));
    }
    if let Some(p) = chosen.signature {
        used.push((Designator::RootVeritySig, state(p, Protection::Unprotected)));
    }
    Some(Used::Disk(used))
}

/// A naked image's root: with dm-verity when systemd uses the hash tree beside it, signed when
/// it uses the signature too; no GPT flags.
fn naked_root(image: &Image, verified: bool, options: &Options) -> State {
    let [tree, root_hash, p7s] = sidecars(&image.path);
    let v = options.systemd;
    let (protection, why) = if !tree.exists() || !root_hash.exists() {
        (Protection::Unprotected, None)
    } else if rules_of(v) < READS_HASH_TREE_BESIDE {
        let why = format!("systemd {v} reads no hash tree beside an image");
        (Protection::Unprotected, Some(why))
    } else if p7s.exists() {
        (Protection::Signed { verified }, None)
    } else {
        to_be_signed(options).unwrap_or((Protection::Verity, None))
    };
    State {
        protection,
        read_only: false,
        growfs: false,
        why,
    }
}

/// A DDI's root: as [`naked_root`], by what systemd does with a DDI's hash tree (see
/// `check_disk`).
fn disk_protection(
    chosen: &ddi::Chosen,
    verified: bool,
    options: &Options,
) -> (Protection, Option<String>) {
    let v = options.systemd;
    if chosen.verity.is_none() {
        (Protection::Unprotected, None)
    } else if rules_of(v) < CHECKS_SIGNATURES {
        let why = format!("systemd {v} runs a disk image without dm-verity");
        (Protection::Unprotected, Some(why))
    } else if chosen.signature.is_some() {
        (Protection::Signed { verified }, None)
    } else if let Some(later) = to_be_signed(options) {
        later
    } else if rules_of(v) < UNSIGNED_DISK_VERITY {
        let why = format!(
            "systemd {v} has no root hash for a disk image without a signature and mounts it \
             without dm-verity"
        );
        (Protection::Unprotected, Some(why))
    } else {
        (Protection::Verity, None)
    }
}

/// An image with a hash tree and no signature yet that is to be signed after the build
/// (`--signed-later`, with no certificates to judge a signature by): taken for signed.
fn to_be_signed(options: &Options) -> Option<(Protection, Option<String>)> {
    (options.signed_later && options.certs.is_empty()).then(|| {
        let why = "to be signed after the build (--signed-later)".to_owned();
        (Protection::Signed { verified: true }, Some(why))
    })
}

fn partition_report((d, s): &(Designator, State)) -> PolicyPartition {
    PolicyPartition {
        designator: d.name().to_owned(),
        protection: match s.protection {
            Protection::Unprotected => "unprotected",
            Protection::Verity => "verity",
            Protection::Signed { verified: true } => "signed",
            Protection::Signed { verified: false } => "signed-unverified",
        }
        .to_owned(),
        read_only: s.read_only,
        growfs: s.growfs,
        why: s.why.clone(),
    }
}
