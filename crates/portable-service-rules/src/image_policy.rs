//! systemd's image policies (`systemd-dissect --image-policy=`, `RootImagePolicy=`, from systemd
//! 254 on): reading one as systemd reads it, and judging an image's partitions by it as systemd's
//! dissect code does, in words a user can act on.
//!
//! A policy is `DESIGNATOR=FLAG+FLAG:DESIGNATOR=…`; an empty designator gives the default for the
//! designators not named (without one: `ignore`), and the whole strings `*` (everything open),
//! `-` or the empty string (everything ignored) and `~` (everything absent) stand alone. The
//! meanings follow systemd's src/shared/image-policy.c and src/shared/dissect-image.c (v256):
//! a flag set says which of its kinds a partition may be (with dm-verity, signed, encrypted,
//! unprotected, there but unused, absent), a kind left unsaid allows all kinds, a hash tree's or
//! signature's partition without a rule of its own takes one from its data partition's, and a
//! partition whose only allowed kind is `unused` (or `unused+absent`) is passed over.
//!
//! What "signed" means is the caller's to decide ([`Protection::Signed`]): systemd's dissect
//! code counts a signature partition as signed before anything checks it.

use std::fmt;

/// A partition's use, as a policy's designators name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Designator {
    Root,
    Usr,
    Home,
    Srv,
    Esp,
    Xbootldr,
    Swap,
    RootVerity,
    UsrVerity,
    RootVeritySig,
    UsrVeritySig,
    Tmp,
    Var,
}

impl Designator {
    /// Every designator, in systemd's order (the order it checks them in).
    pub const ALL: [Designator; 13] = [
        Designator::Root,
        Designator::Usr,
        Designator::Home,
        Designator::Srv,
        Designator::Esp,
        Designator::Xbootldr,
        Designator::Swap,
        Designator::RootVerity,
        Designator::UsrVerity,
        Designator::RootVeritySig,
        Designator::UsrVeritySig,
        Designator::Tmp,
        Designator::Var,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Designator::Root => "root",
            Designator::Usr => "usr",
            Designator::Home => "home",
            Designator::Srv => "srv",
            Designator::Esp => "esp",
            Designator::Xbootldr => "xbootldr",
            Designator::Swap => "swap",
            Designator::RootVerity => "root-verity",
            Designator::UsrVerity => "usr-verity",
            Designator::RootVeritySig => "root-verity-sig",
            Designator::UsrVeritySig => "usr-verity-sig",
            Designator::Tmp => "tmp",
            Designator::Var => "var",
        }
    }

    pub fn from_name(name: &str) -> Option<Designator> {
        Designator::ALL.into_iter().find(|d| d.name() == name)
    }

    /// For a hash tree's partition, its data partition; for a signature's, its data partition
    /// too, and `true`.
    pub fn protects(self) -> Option<(Designator, bool)> {
        match self {
            Designator::RootVerity => Some((Designator::Root, false)),
            Designator::UsrVerity => Some((Designator::Usr, false)),
            Designator::RootVeritySig => Some((Designator::Root, true)),
            Designator::UsrVeritySig => Some((Designator::Usr, true)),
            _ => None,
        }
    }

    /// The hash tree's and the signature's partitions of a data partition that can have them.
    fn protection_partitions(self) -> Option<(Designator, Designator)> {
        match self {
            Designator::Root => Some((Designator::RootVerity, Designator::RootVeritySig)),
            Designator::Usr => Some((Designator::UsrVerity, Designator::UsrVeritySig)),
            _ => None,
        }
    }
}

// The flags, as bits; the values are this module's own.
const VERITY: u16 = 1;
const SIGNED: u16 = 1 << 1;
const ENCRYPTED: u16 = 1 << 2;
const UNPROTECTED: u16 = 1 << 3;
const UNUSED: u16 = 1 << 4;
const ABSENT: u16 = 1 << 5;
const USE: u16 = VERITY | SIGNED | ENCRYPTED | UNPROTECTED | UNUSED | ABSENT;
const IGNORE: u16 = UNUSED | ABSENT;
const READ_ONLY_OFF: u16 = 1 << 6;
const READ_ONLY_ON: u16 = 1 << 7;
const READ_ONLY: u16 = READ_ONLY_OFF | READ_ONLY_ON;
const GROWFS_OFF: u16 = 1 << 8;
const GROWFS_ON: u16 = 1 << 9;
const GROWFS: u16 = GROWFS_OFF | GROWFS_ON;

/// The flag names systemd 254 to 256 know, with their bits.
const FLAG_NAMES: [(&str, u16); 12] = [
    ("verity", VERITY),
    ("signed", SIGNED),
    ("encrypted", ENCRYPTED),
    ("unprotected", UNPROTECTED),
    ("unused", UNUSED),
    ("absent", ABSENT),
    ("open", USE),
    ("ignore", IGNORE),
    ("read-only-on", READ_ONLY_ON),
    ("read-only-off", READ_ONLY_OFF),
    ("growfs-on", GROWFS_ON),
    ("growfs-off", GROWFS_OFF),
];

/// Flags later systemd versions added, which check does not judge (named so the error says so).
const NEWER_FLAGS: [&str; 8] = [
    "encryptedwithintegrity",
    "btrfs",
    "erofs",
    "ext4",
    "f2fs",
    "squashfs",
    "vfat",
    "xfs",
];

/// Why a policy string is not one systemd takes; each names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// A rule without `=` (systemd: EINVAL).
    Syntax { rule: String },
    /// systemd's EBADSLT.
    UnknownDesignator { designator: String },
    /// systemd's EBADRQC.
    UnknownFlag { flag: String, rule: String },
    /// systemd's ENOTUNIQ; `designator` empty for the default.
    Duplicate { designator: String },
    /// A `\` at the end, which systemd's word splitting refuses.
    TrailingBackslash,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            PolicyError::Syntax { rule } => write!(
                f,
                "`{rule}` is no rule: each is DESIGNATOR=FLAG+FLAG (an empty DESIGNATOR for the \
                 default), rules joined by `:`"
            ),
            PolicyError::UnknownDesignator { designator } => write!(
                f,
                "unknown partition designator `{designator}` (systemd knows {})",
                Designator::ALL.map(Designator::name).join(", ")
            ),
            PolicyError::UnknownFlag { flag, rule } if NEWER_FLAGS.contains(&flag.as_str()) => {
                write!(
                    f,
                    "partition policy flag `{flag}` (in `{rule}`) came after systemd 256, and \
                     check does not judge it"
                )
            }
            PolicyError::UnknownFlag { flag, rule } => write!(
                f,
                "unknown partition policy flag `{flag}` in `{rule}` (systemd knows {})",
                FLAG_NAMES.map(|(n, _)| n).join(", ")
            ),
            PolicyError::Duplicate { designator } if designator.is_empty() => {
                f.write_str("the default (an empty designator) is given more than once")
            }
            PolicyError::Duplicate { designator } => write!(
                f,
                "partition designator `{designator}` is given more than once"
            ),
            PolicyError::TrailingBackslash => f.write_str("the policy ends with a lone `\\`"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// One rule as given: its flags and its text, which a violation quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    flags: u16,
    text: String,
}

/// A parsed image policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePolicy {
    text: String,
    rules: Vec<(Designator, Rule)>,
    /// For designators without a rule; `None`: not given, so `ignore` (or a whole-string
    /// policy's).
    default: Option<Rule>,
    /// `*`, `-` or `~`: the whole string's flags for every designator.
    symbolic: Option<u16>,
}

/// What a policy allows a designator, after systemd's filling in of what it leaves unsaid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(u16);

impl Flags {
    pub fn allows_verity(self) -> bool {
        self.0 & VERITY != 0
    }
    pub fn allows_signed(self) -> bool {
        self.0 & SIGNED != 0
    }
    pub fn allows_encrypted(self) -> bool {
        self.0 & ENCRYPTED != 0
    }
    pub fn allows_unprotected(self) -> bool {
        self.0 & UNPROTECTED != 0
    }
    /// The partition may be there and be passed over.
    pub fn allows_unused(self) -> bool {
        self.0 & UNUSED != 0
    }
    pub fn allows_absent(self) -> bool {
        self.0 & ABSENT != 0
    }
    /// `Some(on)`: GPT's read-only flag must be `on`; `None`: either.
    pub fn read_only(self) -> Option<bool> {
        one_of(self.0 & READ_ONLY, READ_ONLY_ON, READ_ONLY_OFF)
    }
    /// `Some(on)`: GPT's growfs flag must be `on`; `None`: either.
    pub fn growfs(self) -> Option<bool> {
        one_of(self.0 & GROWFS, GROWFS_ON, GROWFS_OFF)
    }
    /// A partition that is there is passed over (only `unused`, maybe with `absent`).
    pub fn passes_over(self) -> bool {
        self.0 & USE & !ABSENT == UNUSED
    }
    /// A partition that is there is refused (only `absent`).
    pub fn forbids(self) -> bool {
        self.0 & USE == ABSENT
    }
}

fn one_of(bits: u16, on: u16, off: u16) -> Option<bool> {
    match bits {
        b if b == on => Some(true),
        b if b == off => Some(false),
        _ => None,
    }
}

/// systemd's filling in: a group of flags left empty allows all of its kinds.
fn extend(flags: u16) -> u16 {
    let mut f = flags;
    for group in [USE, READ_ONLY, GROWFS] {
        if f & group == 0 {
            f |= group;
        }
    }
    f
}

/// A rule's flags as they apply to `d`: extended, and without the kinds `d` can't be (a hash
/// tree's or signature's partition is no data partition; only root and usr can have dm-verity;
/// a partition that must be absent has no GPT flags to check).
fn normalized(d: Designator, flags: u16) -> u16 {
    let mut f = extend(flags);
    if d.protects().is_some() {
        f &= !(VERITY | SIGNED | ENCRYPTED);
    }
    if d.protection_partitions().is_none() {
        f &= !(VERITY | SIGNED);
    }
    if f & USE == ABSENT {
        f &= !(READ_ONLY | GROWFS);
    }
    f
}

/// The white space systemd strips around a designator and a flag.
const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

/// Splits `s` at every `sep` as systemd's word splitting does here: empty words kept (so a
/// trailing `sep` gives an empty last word), a `\` taking the next character as it is.
fn split(s: &str, sep: char) -> Result<Vec<String>, PolicyError> {
    let mut words = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let word = words.last_mut().expect("never empty");
        match c {
            '\\' => word.push(chars.next().ok_or(PolicyError::TrailingBackslash)?),
            c if c == sep => words.push(String::new()),
            c => word.push(c),
        }
    }
    Ok(words)
}

/// A rule's flags (`verity+signed`); empty or `-`: none said, which allows everything.
fn parse_flags(flags: &str, rule: &str) -> Result<u16, PolicyError> {
    let flags = flags.trim_matches(WHITESPACE);
    if flags.is_empty() || flags == "-" {
        return Ok(0);
    }
    let mut bits = 0;
    for flag in split(flags, '+')? {
        let flag = flag.trim_matches(WHITESPACE);
        let (_, b) = FLAG_NAMES.iter().find(|(n, _)| *n == flag).ok_or_else(|| {
            PolicyError::UnknownFlag {
                flag: flag.to_owned(),
                rule: rule.to_owned(),
            }
        })?;
        bits |= b;
    }
    Ok(bits)
}

/// Reads a policy as systemd 254 to 256 do (`image_policy_from_string()`).
pub fn parse(policy: &str) -> Result<ImagePolicy, PolicyError> {
    let symbolic = match policy {
        "" | "-" => Some(IGNORE),
        "*" => Some(USE),
        "~" => Some(ABSENT),
        _ => None,
    };
    let mut parsed = ImagePolicy {
        text: policy.to_owned(),
        rules: Vec::new(),
        default: None,
        symbolic,
    };
    if symbolic.is_some() {
        return Ok(parsed);
    }
    for rule in split(policy, ':')? {
        let (designator, flags) = split_rule(&rule)?;
        let text = rule.trim_matches(WHITESPACE).to_owned();
        // systemd judges the designator before the flags
        let designator = match designator.trim_matches(WHITESPACE) {
            "" if parsed.default.is_some() => {
                return Err(PolicyError::Duplicate {
                    designator: String::new(),
                })
            }
            "" => None,
            name => Some(designator_of(name, &parsed.rules)?),
        };
        let rule = Rule {
            flags: parse_flags(&flags, &text)?,
            text,
        };
        match designator {
            Some(d) => parsed.rules.push((d, rule)),
            None => parsed.default = Some(rule),
        }
    }
    Ok(parsed)
}

/// The designator `name` names, if systemd knows it and `rules` have none for it yet.
fn designator_of(name: &str, rules: &[(Designator, Rule)]) -> Result<Designator, PolicyError> {
    let d = Designator::from_name(name).ok_or_else(|| PolicyError::UnknownDesignator {
        designator: name.to_owned(),
    })?;
    if rules.iter().any(|(have, _)| *have == d) {
        return Err(PolicyError::Duplicate {
            designator: name.to_owned(),
        });
    }
    Ok(d)
}

/// A rule's designator (escapes taken) and the rest after its first `=`, as it is.
fn split_rule(rule: &str) -> Result<(String, String), PolicyError> {
    let mut designator = String::new();
    let mut chars = rule.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => designator.push(
                chars
                    .next()
                    .map(|(_, c)| c)
                    .ok_or(PolicyError::TrailingBackslash)?,
            ),
            '=' => return Ok((designator, rule[i + 1..].to_owned())),
            c => designator.push(c),
        }
    }
    Err(PolicyError::Syntax {
        rule: rule.to_owned(),
    })
}

/// Where a designator's flags come from, as a violation says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Its own rule, as written (`root=signed`).
    Rule(String),
    /// Its data partition's rule, which a hash tree's or signature's partition without a rule
    /// of its own follows: the partition, its data partition, the rule as written.
    DataRule(Designator, Designator, String),
    /// The default rule, as written (`=verity`).
    Default(String),
    /// No rule and no default: systemd's `ignore` for what a policy leaves out.
    LeftOut,
    /// The whole policy is `*`, `-` (or empty) or `~`.
    Whole(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Source::Rule(r) => write!(f, "the policy's `{r}`"),
            Source::DataRule(p, d, r) => write!(
                f,
                "the policy's `{r}` ({} has no rule of its own and follows {}'s)",
                p.name(),
                d.name()
            ),
            Source::Default(r) => write!(f, "the policy's default `{r}`"),
            Source::LeftOut => {
                f.write_str("the policy, which doesn't name it (a designator left out is ignored)")
            }
            Source::Whole(p) if p.is_empty() => f.write_str("the empty policy"),
            Source::Whole(p) => write!(f, "the policy `{p}`"),
        }
    }
}

impl ImagePolicy {
    /// The policy as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What the policy allows `d`, and which of its rules says so.
    pub fn flags(&self, d: Designator) -> (Flags, Source) {
        if let Some((flags, source)) = self.rule_for(d) {
            return (Flags(flags), source);
        }
        let (default, source) = match (&self.symbolic, &self.default) {
            (Some(flags), _) => (*flags, Source::Whole(self.text.clone())),
            (None, Some(rule)) => (rule.flags, Source::Default(rule.text.clone())),
            (None, None) => (IGNORE, Source::LeftOut),
        };
        (Flags(normalized(d, default)), source)
    }

    /// `d`'s own rule, or for a hash tree's or signature's partition one made from its data
    /// partition's own rule when that asks for dm-verity (or, for the signature, a signature):
    /// it must then be there unprotected, or unused or absent as the data partition may be,
    /// with the same GPT flags.
    fn rule_for(&self, d: Designator) -> Option<(u16, Source)> {
        if let Some((_, rule)) = self.rules.iter().find(|(have, _)| *have == d) {
            return Some((normalized(d, rule.flags), Source::Rule(rule.text.clone())));
        }
        let (data, signature) = d.protects()?;
        let (data_flags, _) = self.rule_for(data)?;
        let needs = if signature { SIGNED } else { SIGNED | VERITY };
        if data_flags & needs == 0 {
            return None;
        }
        let (_, rule) = self.rules.iter().find(|(have, _)| *have == data)?;
        let flags = UNPROTECTED | (data_flags & (UNUSED | ABSENT | READ_ONLY | GROWFS));
        Some((
            normalized(d, flags),
            Source::DataRule(d, data, rule.text.clone()),
        ))
    }

    /// The data partitions whose flags take a signature but not a hash tree without one: only a
    /// signature checked against the hosts' certificates can be judged for them.
    pub fn wants_signature(&self) -> Vec<Designator> {
        [Designator::Root, Designator::Usr]
            .into_iter()
            .filter(|d| {
                let (f, _) = self.flags(*d);
                f.allows_signed() && !f.allows_verity()
            })
            .collect()
    }
}

impl fmt::Display for Flags {
    /// systemd's long form (`verity+signed+read-only-on`), the use flags first.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = FLAG_NAMES
            .iter()
            .filter(|(_, b)| b.count_ones() == 1 && self.0 & b != 0)
            .map(|(n, _)| *n)
            .collect();
        f.write_str(&names.join("+"))
    }
}

/// How a data partition is protected where systemd uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// No dm-verity (for a hash tree's or signature's partition: there, which is all it can be).
    Unprotected,
    /// dm-verity, without a signature.
    Verity,
    /// dm-verity with a signature of its root hash; `verified`: by a certificate the hosts trust
    /// (or to be signed so), else a signature not checked against them or not by them.
    Signed { verified: bool },
}

/// What an image has for one designator, as systemd uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub protection: Protection,
    /// GPT's read-only flag (an image of one file system has no flags: false, as systemd takes
    /// them).
    pub read_only: bool,
    /// GPT's growfs flag.
    pub growfs: bool,
    /// Why the protection is what it is, when that isn't plain from the image (a systemd version
    /// that doesn't use the hash tree, a signature nobody checked).
    pub why: Option<String>,
}

/// What `flags` allows a partition to be, in words.
fn wanted(flags: Flags) -> String {
    let (signed, verity) = (flags.allows_signed(), flags.allows_verity());
    let kinds: Vec<&str> = [
        (signed && verity, "with dm-verity (signed or not)"),
        (signed && !verity, "signed"),
        (verity && !signed, "with dm-verity and no signature"),
        (flags.allows_encrypted(), "encrypted"),
        (flags.allows_unprotected(), "unprotected"),
        (flags.allows_unused(), "there but unused"),
        (flags.allows_absent(), "absent"),
    ]
    .into_iter()
    .filter_map(|(allowed, words)| allowed.then_some(words))
    .collect();
    match kinds[..] {
        [] => "nothing at all (no kind is left for it)".to_owned(),
        [one] => one.to_owned(),
        [ref first @ .., last] => format!("{} or {last}", first.join(", ")),
    }
}

/// What a used partition is, in words.
fn found(d: Designator, protection: Protection, why: &Option<String>) -> String {
    let is = match protection {
        Protection::Unprotected if d.protection_partitions().is_some() => {
            "is unprotected (no dm-verity)"
        }
        Protection::Unprotected => "is there",
        Protection::Verity => "has dm-verity but no signature",
        Protection::Signed { verified: true } => "is signed",
        Protection::Signed { verified: false } => {
            "has a signature not verified against the hosts' certificates"
        }
    };
    match why {
        Some(why) => format!("{} {is} ({why})", d.name()),
        None => format!("{} {is}", d.name()),
    }
}

/// The violations of a partition systemd uses: its protection, then its GPT flags.
fn judge_used(
    d: Designator,
    state: &State,
    protection: Protection,
    policy: &ImagePolicy,
) -> Vec<String> {
    let (flags, source) = policy.flags(d);
    let mut out = Vec::new();
    let fits = match protection {
        Protection::Unprotected => flags.allows_unprotected(),
        Protection::Verity => flags.allows_verity(),
        Protection::Signed { verified: true } => flags.allows_signed(),
        // systemd sees a signature; a gate that wants one wants it by the hosts' certificates
        Protection::Signed { verified: false } => flags.allows_signed() && flags.allows_verity(),
    };
    if !fits {
        out.push(format!(
            "{}, and {source} wants it {}",
            found(d, protection, &state.why),
            wanted(flags)
        ));
    }
    let gpt = [
        ("read-only", flags.read_only(), state.read_only),
        ("growfs", flags.growfs(), state.growfs),
    ];
    for (name, want, is) in gpt {
        if let Some(want) = want.filter(|w| *w != is) {
            let on = |b: bool| if b { "on" } else { "off" };
            out.push(format!(
                "{} has GPT's {name} flag {}, and {source} wants it {} ({name}-{})",
                d.name(),
                on(is),
                on(want),
                on(want)
            ));
        }
    }
    out
}

/// The violations of a policy by an image of one file system (no partition table), which
/// systemd takes for the root partition: with dm-verity when it uses the hash tree beside it,
/// signed when it uses the signature too, without GPT flags (taken as off). Nothing else is
/// judged: systemd looks at no other designator for such an image.
pub fn judge_naked(policy: &ImagePolicy, root: &State) -> Vec<String> {
    let (flags, source) = policy.flags(Designator::Root);
    if flags.forbids() {
        return vec![format!(
            "the image is one file system, which systemd takes for root, and {source} wants \
             root absent"
        )];
    }
    if flags.passes_over() {
        return vec![format!(
            "{source} has systemd pass over root (unused), and an image of one file system has \
             nothing else: it finds nothing to run"
        )];
    }
    judge_used(Designator::Root, root, root.protection, policy)
}

/// The violations of a policy by a disk image's partitions (those systemd uses: for each
/// designator at most one, the host's), in systemd's order of designators. A partition the
/// policy passes over is as good as absent, and takes its protection with it: a root whose
/// hash tree's partition is passed over is unprotected.
pub fn judge_disk(policy: &ImagePolicy, partitions: &[(Designator, State)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut used: Vec<(Designator, &State)> = Vec::new();
    let mut passed_over = Vec::new();
    for (d, state) in partitions {
        let (flags, source) = policy.flags(*d);
        if flags.forbids() {
            out.push(format!(
                "{} is there, and {source} wants it absent",
                d.name()
            ));
        } else if flags.passes_over() {
            passed_over.push(*d);
        } else {
            used.push((*d, state));
        }
    }
    // one the policy forbids refuses the image by itself: it doesn't take root's protection
    let is_used = |d: Designator| !passed_over.contains(&d);
    let mut at_fault: Vec<Designator> = Vec::new();
    for d in Designator::ALL {
        let (flags, source) = policy.flags(d);
        // a hash tree's or signature's partition is said only when its data partition isn't
        if let Source::DataRule(_, data, _) = &source {
            if at_fault.contains(data) {
                continue;
            }
        }
        let said = match used.iter().find(|(u, _)| *u == d) {
            Some((_, state)) => {
                let protection = as_used(d, state.protection, is_used);
                if protection == state.protection {
                    judge_used(d, state, protection, policy)
                } else {
                    let why = "the policy has systemd pass over its protection's partitions";
                    let state = State {
                        why: Some(why.to_owned()),
                        ..(*state).clone()
                    };
                    judge_used(d, &state, protection, policy)
                }
            }
            None if passed_over.contains(&d) || partitions.iter().any(|(p, _)| *p == d) => {
                Vec::new()
            }
            None if flags.allows_absent() => Vec::new(),
            None => vec![format!(
                "{} is absent, and {source} wants it {}",
                d.name(),
                wanted(flags)
            )],
        };
        if !said.is_empty() {
            at_fault.push(d);
        }
        out.extend(said);
    }
    if passed_over.contains(&Designator::Root) {
        let (_, source) = policy.flags(Designator::Root);
        out.push(format!(
            "{source} has systemd pass over root (unused): it finds no root file system to run"
        ));
    }
    out
}

/// A data partition's protection once the policy has had systemd pass over its hash tree's or
/// signature's partition.
fn as_used(
    d: Designator,
    protection: Protection,
    is_used: impl Fn(Designator) -> bool,
) -> Protection {
    let Some((verity, signature)) = d.protection_partitions() else {
        return protection;
    };
    match protection {
        Protection::Verity | Protection::Signed { .. } if !is_used(verity) => {
            Protection::Unprotected
        }
        Protection::Signed { .. } if !is_used(signature) => Protection::Verity,
        p => p,
    }
}
