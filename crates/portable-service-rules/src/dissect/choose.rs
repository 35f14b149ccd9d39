//! systemd's choice among the partitions libblkid lists (src/shared/dissect-image.c,
//! `dissect_image()`, 252 and 262): each partition a slot by its kind and how its architecture
//! ranks on the host (its own, the secondary one systemd runs, any other); the no-auto flag
//! passes a partition over; two in one slot keep the first, except root and usr, where the
//! label with the newer version wins; the best-ranked root then brings its own verity,
//! signature and usr partitions; a lone generic Linux partition is the root when nothing else is.

use super::gpt::Entry;
use super::types::{kind_of, Kind};
use super::{Mount, Refusal, Rules};
use std::cmp::Ordering;
use std::collections::BTreeMap;

const READ_ONLY: u64 = 1 << 60;
const GROWFS: u64 = 1 << 59;
const NO_AUTO: u64 = 1 << 63;
const NO_BLOCK_IO: u64 = 1 << 1;

/// How a partition's architecture ranks on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Native,
    Secondary,
    Other,
}

/// The 32-bit architecture a 64-bit host also runs (systemd's `ARCHITECTURE_SECONDARY`).
fn secondary(host: &str) -> Option<&'static str> {
    match host {
        "x86-64" => Some("x86"),
        "arm64" => Some("arm"),
        _ => None,
    }
}

fn rank(arch: &str, host: &str) -> Rank {
    if arch == host {
        Rank::Native
    } else if secondary(host) == Some(arch) {
        Rank::Secondary
    } else {
        Rank::Other
    }
}

fn mount(e: &Entry, kind: Kind, arch: Option<&'static str>, rules: Rules) -> Mount {
    let (fstype, rw) = match kind {
        Kind::RootVerity | Kind::UsrVerity => (Some("DM_verity_hash".to_owned()), false),
        Kind::RootVeritySig | Kind::UsrVeritySig => {
            (Some("verity_hash_signature".to_owned()), false)
        }
        // the ESP is vfat by its type, and neither it nor swap reads the read-only flag
        Kind::Other("esp") => (Some("vfat".to_owned()), true),
        Kind::Other("swap") => (None, true),
        // 262 takes XBOOTLDR for vfat by its type too (measured in the 262 guest); 252 probes it
        Kind::Other("xbootldr") if rules == Rules::V262 => {
            (Some("vfat".to_owned()), e.flags & READ_ONLY == 0)
        }
        _ => (None, e.flags & READ_ONLY == 0),
    };
    let grows = !matches!(
        kind,
        Kind::Other("esp" | "swap") | Kind::RootVerity | Kind::UsrVerity
    ) && !matches!(kind, Kind::RootVeritySig | Kind::UsrVeritySig);
    Mount {
        kind,
        designator: kind.name().to_owned(),
        number: Some(e.number),
        arch,
        fstype,
        rw,
        growfs: grows && e.flags & GROWFS != 0,
        uuid: Some(e.uuid),
        label: e.label.clone(),
        range: e.range.clone(),
    }
}

/// Whether `new` takes the slot of `old`: only for the versioned kinds (all but generic and
/// other uses), by their labels' versions (a missing label is older than any).
fn replaces(old: &Mount, new: &Mount) -> bool {
    if matches!(new.kind, Kind::Generic | Kind::Other(_)) {
        return false;
    }
    match (&old.label, &new.label) {
        (None, None) => false,
        (None, Some(_)) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => label_order(a, b) == Ordering::Less,
    }
}

/// systemd's `strverscmp_improved()` on any text, as it orders partition labels: unlike a
/// sysupdate version (`crate::feed::compare_versions`), a label may hold `~` (what follows is
/// older: a pre-release) and `^` (newer: a patch level); other characters than letters,
/// digits, `~-^.` are passed over.
fn label_order(a: &str, b: &str) -> Ordering {
    let version_char = |c: u8| c.is_ascii_alphanumeric() || b"~-^.".contains(&c);
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let at = |s: &[u8]| s.first().copied().unwrap_or(0);
    loop {
        while !a.is_empty() && !version_char(a[0]) {
            a = &a[1..];
        }
        while !b.is_empty() && !version_char(b[0]) {
            b = &b[1..];
        }
        for sep in [b'~', 0, b'-', b'^', b'.'] {
            if sep == 0 {
                if a.is_empty() || b.is_empty() {
                    return at(a).cmp(&at(b));
                }
                continue;
            }
            if at(a) == sep || at(b) == sep {
                let order = (at(a) != sep).cmp(&(at(b) != sep));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
        let digits = at(a).is_ascii_digit() || at(b).is_ascii_digit();
        let run = |s: &[u8]| {
            s.iter()
                .position(|c| {
                    if digits {
                        !c.is_ascii_digit()
                    } else {
                        !c.is_ascii_alphabetic()
                    }
                })
                .unwrap_or(s.len())
        };
        let (ra, rb) = (run(a), run(b));
        let order = if digits {
            let zeros = |s: &[u8], r: usize| s[..r].iter().take_while(|c| **c == b'0').count();
            let (x, y) = (&a[zeros(a, ra)..ra], &b[zeros(b, rb)..rb]);
            (ra != 0)
                .cmp(&(rb != 0))
                .then(x.len().cmp(&y.len()))
                .then_with(|| x.cmp(y))
        } else {
            let n = ra.min(rb);
            a[..n].cmp(&b[..n]).then(ra.cmp(&rb))
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (&a[ra..], &b[rb..]);
    }
}

type Slots = BTreeMap<(Kind, Rank), Mount>;

/// The partitions into slots; generic Linux partitions apart.
fn slots(entries: &[Entry], rules: Rules, host: &str) -> (Slots, Vec<Mount>) {
    let (mut slots, mut generic) = (Slots::new(), Vec::new());
    for e in entries {
        let Some((kind, arch)) = kind_of(&e.type_uuid) else {
            continue;
        };
        // the ESP's own flag for "not for me" is bit 1 (UEFI's no-block-IO), not no-auto
        let skip = match kind {
            Kind::Other("esp") => e.flags & NO_BLOCK_IO != 0,
            _ => e.flags & NO_AUTO != 0,
        };
        if skip {
            continue;
        }
        if rules == Rules::V262 && e.label.as_deref() == Some("_empty") {
            continue;
        }
        let m = mount(e, kind, arch, rules);
        let Some(arch) = arch else {
            match kind {
                Kind::Generic => generic.push(m),
                // other uses (home, srv, var, tmp, ESP, ...): the first of each wins
                _ => {
                    slots.entry((kind, Rank::Native)).or_insert(m);
                }
            }
            continue;
        };
        // 262 ranks architectures inside one slot; 252 keeps a slot per rank
        let r = rank(arch, host);
        let key = (
            kind,
            if rules == Rules::V262 {
                Rank::Native
            } else {
                r
            },
        );
        match slots.get(&key) {
            Some(old) if rules == Rules::V262 && rank(old.arch.unwrap_or(""), host) != r => {
                if r < rank(old.arch.unwrap_or(""), host) {
                    slots.insert(key, m);
                }
            }
            Some(old) if !replaces(old, &m) => {}
            _ => {
                slots.insert(key, m);
            }
        }
    }
    (slots, generic)
}

const ROOTS: [Kind; 3] = [Kind::Root, Kind::RootVerity, Kind::RootVeritySig];
const USRS: [Kind; 3] = [Kind::Usr, Kind::UsrVerity, Kind::UsrVeritySig];

fn refused(why: &str) -> Refusal {
    Refusal::Systemd(why.to_owned())
}

/// 252's fallback for one of root or usr: the native slot if it has the data partition, else
/// the secondary, else any other; the rank taken moves (with `with`, usr's slots of that rank,
/// over what usr had) to the native slots, and the ranks after it are dropped. A verity or
/// signature partition without its data partition in the rank taken is refused.
fn promote(slots: &mut Slots, kinds: [Kind; 3], with: Option<[Kind; 3]>) -> Result<(), Refusal> {
    let ranks = [Rank::Native, Rank::Secondary, Rank::Other];
    for (i, rank) in ranks.into_iter().enumerate() {
        if slots.contains_key(&(kinds[0], rank)) {
            for k in kinds.iter().chain(with.iter().flatten()) {
                if rank != Rank::Native {
                    let taken = slots.remove(&(*k, rank));
                    slots.remove(&(*k, Rank::Native));
                    if let Some(m) = taken {
                        slots.insert((*k, Rank::Native), m);
                    }
                }
                for lower in &ranks[i + 1..] {
                    slots.remove(&(*k, *lower));
                }
            }
            return Ok(());
        }
        if rank != Rank::Other && kinds[1..].iter().any(|k| slots.contains_key(&(*k, rank))) {
            return Err(refused(
                "it has a verity or signature partition but no data partition of its \
                 architecture",
            ));
        }
    }
    Ok(())
}

/// Two slots systemd can't use together.
fn conflicts(slots: &Slots) -> Result<(), Refusal> {
    let has = |k: Kind| slots.contains_key(&(k, Rank::Native));
    if has(Kind::RootVeritySig) && !has(Kind::RootVerity) {
        return Err(refused(
            "it has a root-verity-sig partition but no root-verity partition",
        ));
    }
    if has(Kind::UsrVeritySig) && !has(Kind::UsrVerity) {
        return Err(refused(
            "it has a usr-verity-sig partition but no usr-verity partition",
        ));
    }
    let arch = |k: Kind| slots.get(&(k, Rank::Native)).and_then(|m| m.arch);
    if let (Some(r), Some(u)) = (arch(Kind::Root), arch(Kind::Usr)) {
        if r != u {
            return Err(refused(&format!(
                "its root partition is for {r} and its usr partition for {u}"
            )));
        }
    }
    if has(Kind::RootVerity) && has(Kind::UsrVerity) {
        return Err(refused(
            "it has both a root-verity and a usr-verity partition",
        ));
    }
    if has(Kind::RootVerity) && has(Kind::Usr) {
        return Err(refused(
            "it has a root-verity partition and a usr partition: systemd takes no usr \
             partition beside a verity-protected root",
        ));
    }
    Ok(())
}

/// What systemd mounts of `entries` on a host of `host`.
pub fn choose(entries: &[Entry], rules: Rules, host: &str) -> Result<Vec<Mount>, Refusal> {
    let (mut slots, generic) = slots(entries, rules, host);
    if rules == Rules::V252 {
        promote(&mut slots, ROOTS, Some(USRS))?;
        promote(&mut slots, USRS, None)?;
    } else {
        for (data, rest) in [(Kind::Root, &ROOTS[1..]), (Kind::Usr, &USRS[1..])] {
            let orphan = rest.iter().any(|k| slots.contains_key(&(*k, Rank::Native)));
            if orphan && !slots.contains_key(&(data, Rank::Native)) {
                return Err(refused(&format!(
                    "it has a {} partition but no {} partition",
                    rest[0].name(),
                    data.name()
                )));
            }
        }
    }
    conflicts(&slots)?;
    let has = |k: Kind| slots.contains_key(&(k, Rank::Native));
    if !has(Kind::Root) && !has(Kind::Usr) {
        match &generic[..] {
            [] => {
                return Err(refused(
                    "it has no root or usr partition systemd can use here",
                ))
            }
            [one] => {
                let root = Mount {
                    kind: Kind::Root,
                    designator: "root".into(),
                    ..one.clone()
                };
                return Ok(std::iter::once(root).chain(listed(slots)).collect());
            }
            [..] => {
                return Err(refused(
                    "it has several generic Linux partitions and no root",
                ))
            }
        }
    }
    Ok(listed(slots).collect())
}

/// The slots' partitions, each under systemd-dissect's name for its slot.
fn listed(slots: Slots) -> impl Iterator<Item = Mount> {
    slots.into_iter().map(|((kind, rank), mut m)| {
        m.designator = designator(kind, rank);
        m
    })
}

/// systemd-dissect's name of a slot: a partition left in a secondary or other slot is listed
/// under it ("root-other-verity") and never mounted.
fn designator(kind: Kind, rank: Rank) -> String {
    let name = kind.name();
    let suffix = match rank {
        Rank::Native => return name.to_owned(),
        Rank::Secondary => "secondary",
        Rank::Other => "other",
    };
    match name.split_once('-') {
        Some((data, rest)) => format!("{data}-{suffix}-{rest}"),
        None => format!("{name}-{suffix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::label_order;
    use std::cmp::Ordering::{Equal, Greater, Less};

    /// Orders from systemd's own test of strverscmp_improved (test-string-util.c, 252).
    #[test]
    fn labels_order_as_systemd_orders_them() {
        let ascending = [
            "~1",
            "",
            "ab",
            "abb",
            "abc",
            "0001",
            "002",
            "12",
            "122",
            "122.9",
            "123~rc1",
            "123",
            "123-a",
            "123-a.1",
            "123-a1",
            "123-a1.1",
            "123-3",
            "123-3.1",
            "123^patch1",
            "123^1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124",
        ];
        for (i, a) in ascending.iter().enumerate() {
            assert_eq!(label_order(a, a), Equal, "{a}");
            for b in &ascending[i + 1..] {
                assert_eq!(label_order(a, b), Less, "{a} < {b}");
                assert_eq!(label_order(b, a), Greater, "{b} > {a}");
            }
        }
        assert_eq!(label_order("root-x86-64_1~rc1", "root-x86-64_1"), Less);
    }
}
