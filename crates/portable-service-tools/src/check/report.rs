//! What `check` found, as one JSON document (`--json`) or as text for a person.

use super::tree::Image;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The whole result. `accepted` is the verdict: systemd would attach the image and its units
/// would start (nothing missing, no closure hole). `advice` never changes it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The version of this document's fields ([`crate::JSON_SCHEMA`]).
    pub schema: u32,
    pub image: String,
    pub systemd: u32,
    /// The profile it is attached with (`portablectl attach --profile`).
    pub profile: String,
    pub accepted: bool,
    pub os_release_file: Option<String>,
    pub os_release: BTreeMap<String, String>,
    pub dissect: Dissect,
    pub matches: Vec<String>,
    pub units: Vec<Unit>,
    pub skipped_units: Vec<SkippedUnit>,
    pub missing_mount_points: Vec<String>,
    pub missing_programs: Vec<Program>,
    pub store_holes: Vec<Hole>,
    pub extensions: Vec<ExtensionReport>,
    /// The partitions of the images that are Discoverable Disk Images.
    pub partitions: Vec<PartitionReport>,
    /// What the dm-verity files beside the images (or their partitions) say, when there are any.
    pub verity: Vec<String>,
    /// What `--image-policy` judged, when it was given.
    pub image_policy: Option<PolicyReport>,
    pub errors: Vec<Finding>,
    pub advice: Vec<String>,
    /// The images whose root hash signature a certificate given verified.
    #[serde(skip)]
    pub signed_by_hosts: Vec<String>,
}

/// An image policy (`--image-policy`) and what it found in each image.
#[derive(Debug, Serialize)]
pub struct PolicyReport {
    /// The policy as given.
    pub policy: String,
    pub images: Vec<PolicyImage>,
}

/// What systemd would use of one image, as the policy judges it.
#[derive(Debug, Serialize)]
pub struct PolicyImage {
    pub image: String,
    pub partitions: Vec<PolicyPartition>,
    /// Each rule the image breaks, in words; each is also an error.
    pub violations: Vec<String>,
}

/// One partition systemd would use (an image of one file system: `root`).
#[derive(Debug, Serialize)]
pub struct PolicyPartition {
    pub designator: String,
    /// `unprotected`, `verity` (a hash tree, no signature), `signed` (by a certificate given,
    /// or to be signed: `--signed-later`) or `signed-unverified` (a signature not verified
    /// against the certificates given).
    pub protection: String,
    pub read_only: bool,
    pub growfs: bool,
    /// Why the protection is what it is, where the files alone don't say.
    pub why: Option<String>,
}

/// What systemd-dissect's "Use As" would say.
#[derive(Debug, Default, Serialize)]
pub struct Dissect {
    pub portable_service: bool,
}

#[derive(Debug, Serialize)]
pub struct Unit {
    pub name: String,
    /// `<image name>:<path>`.
    pub from: String,
    #[serde(skip)]
    pub content: String,
}

#[derive(Debug, Serialize)]
pub struct SkippedUnit {
    pub name: String,
    pub from: String,
    pub why: String,
    /// systemd passes over it (empty, a link to /dev/null, a link 252 doesn't follow) to a unit
    /// of the same name in a later directory.
    pub passed_over: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Program {
    pub unit: String,
    pub setting: String,
    pub program: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hole {
    pub symlink: String,
    pub target: String,
    pub missing: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ExtensionReport {
    pub path: String,
    pub name: String,
    /// `sysext` or `confext`; absent when systemd finds no release file.
    pub kind: Option<String>,
    pub release_file: Option<String>,
    pub release: BTreeMap<String, String>,
    pub matches_base: bool,
    /// systemd-dissect: "extension for portable service".
    pub dissect_extension: bool,
    /// What each systemd version does with the file as named.
    pub by_systemd: BTreeMap<u32, String>,
    pub problems: Vec<String>,
}

/// One partition of a disk image, as systemd-dissect lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub image: String,
    pub number: u32,
    /// `root`, `root-verity`, `root-verity-sig`; `None`: a type systemd doesn't use here.
    pub designator: Option<String>,
    pub architecture: Option<String>,
    pub type_uuid: String,
    pub uuid: String,
    pub label: String,
    pub read_only: bool,
    pub bytes: u64,
}

/// An error: portabled refuses the image (`refused`), or accepts it but a unit can't run.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub stage: &'static str,
    pub message: String,
}

impl Finding {
    pub fn refused(message: String) -> Finding {
        Finding {
            stage: "attach",
            message,
        }
    }
    pub fn runs(message: String) -> Finding {
        Finding {
            stage: "run",
            message,
        }
    }
}

impl Report {
    pub fn new(image: &Image, systemd: u32, profile: &str) -> Report {
        Report {
            schema: crate::JSON_SCHEMA,
            image: image.path.to_string(),
            systemd,
            profile: profile.to_owned(),
            accepted: true,
            os_release_file: None,
            os_release: BTreeMap::new(),
            dissect: Dissect::default(),
            matches: Vec::new(),
            units: Vec::new(),
            skipped_units: Vec::new(),
            missing_mount_points: Vec::new(),
            missing_programs: Vec::new(),
            store_holes: Vec::new(),
            extensions: Vec::new(),
            partitions: Vec::new(),
            verity: Vec::new(),
            image_policy: None,
            errors: Vec::new(),
            advice: Vec::new(),
            signed_by_hosts: Vec::new(),
        }
    }

    pub fn error(&mut self, finding: Finding) {
        self.accepted = false;
        self.errors.push(finding);
    }

    pub fn advice(&mut self, text: &str) {
        self.advice.push(text.to_owned());
    }

    /// The report for a person.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let mark = |b: bool| if b { "✓" } else { "✗" };
        let rules = super::rules_of(self.systemd);
        if rules == self.systemd {
            let _ = writeln!(t, "image {} (systemd {} rules)", self.image, self.systemd);
        } else if rules > self.systemd {
            let _ = writeln!(
                t,
                "image {} (systemd {}: not measured; the rules of {}, the oldest measured version)",
                self.image, self.systemd, rules
            );
        } else {
            let _ = writeln!(
                t,
                "image {} (systemd {}: the rules of {}, the newest measured version not above it)",
                self.image, self.systemd, rules
            );
        }
        if self.profile != "default" {
            let _ = writeln!(t, "  attached with --profile {}", self.profile);
        }
        if let Some(file) = &self.os_release_file {
            let fields: Vec<String> = self
                .os_release
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(t, "  {file}: {}", fields.join(" "));
        }
        if rules < super::NAMES_USES {
            let _ = writeln!(
                t,
                "  systemd-dissect: names no use of an image before systemd 250 (this is {})",
                self.systemd
            );
        } else {
            let _ = writeln!(
                t,
                "  systemd-dissect: {} portable service",
                mark(self.dissect.portable_service)
            );
        }
        let _ = writeln!(t, "  matches: {}", self.matches.join(" "));
        for u in &self.units {
            let _ = writeln!(t, "  attached: {} ({})", u.name, u.from);
        }
        for u in &self.skipped_units {
            let _ = writeln!(t, "  skipped: {} ({}): {}", u.name, u.from, u.why);
        }
        for e in &self.extensions {
            let _ = writeln!(
                t,
                "extension {}: {}",
                e.path,
                match (&e.kind, &e.release_file) {
                    (Some(k), Some(f)) => format!("{k}, {f}"),
                    _ => "no extension-release file systemd reads".into(),
                }
            );
            if e.kind.is_some() && rules >= super::NAMES_USES {
                let _ = writeln!(
                    t,
                    "  matches the base: {}; systemd-dissect: {} extension for portable service",
                    if e.matches_base { "yes" } else { "no" },
                    mark(e.dissect_extension)
                );
            }
            for (v, verdict) in &e.by_systemd {
                let _ = writeln!(t, "  systemd {v}: {verdict}");
            }
        }
        for p in &self.partitions {
            let _ = writeln!(
                t,
                "partition {}:{} {} {} label {} uuid {} {} {} bytes",
                p.image,
                p.number,
                p.designator
                    .as_deref()
                    .unwrap_or("(a type systemd doesn't use)"),
                p.architecture.as_deref().unwrap_or("-"),
                p.label,
                p.uuid,
                if p.read_only { "read-only" } else { "writable" },
                p.bytes
            );
        }
        for v in &self.verity {
            let _ = writeln!(t, "verity: {v}");
        }
        if let Some(p) = &self.image_policy {
            for i in &p.images {
                let parts: Vec<String> = i.partitions.iter().map(PolicyPartition::text).collect();
                let _ = writeln!(
                    t,
                    "image policy {}: {}: {} {}",
                    p.policy,
                    i.image,
                    parts.join(", "),
                    mark(i.violations.is_empty())
                );
            }
        }
        for e in &self.errors {
            let _ = writeln!(t, "error ({}): {}", e.stage, e.message);
        }
        for a in &self.advice {
            let _ = writeln!(t, "advice: {a}");
        }
        let _ = writeln!(
            t,
            "verdict: {}",
            if self.accepted {
                "accepted: systemd would attach it and its units can start"
            } else {
                "refused"
            }
        );
        t
    }
}

impl PolicyPartition {
    /// `root signed, read-only`.
    fn text(&self) -> String {
        let mut t = format!("{} {}", self.designator, self.protection);
        if self.read_only {
            t.push_str(" read-only");
        }
        if self.growfs {
            t.push_str(" growfs");
        }
        if let Some(why) = &self.why {
            let _ = write!(t, " ({why})");
        }
        t
    }
}
