//! The unit files portabled attaches from an image and its extensions, by the rules of a
//! systemd version: where it looks and in which order, which names and kinds of file it takes
//! for the matches, which it passes over (masked, empty, an absolute link), and the refusals of
//! an image that has none or, before 245, a unit that is no service.

use super::extensions::Layers;
use super::report::{Finding, Report, SkippedUnit, Unit};
use super::tree::{Image, Node};
use super::versions::{
    rules_of, FOLLOWS_ABSOLUTE_UNIT_LINKS, PASSES_OVER_EMPTY_UNITS, PROFILES_SERVICES_ONLY,
};
use super::{unjudgeable, Options};
use portable_service_rules::names::{unit_matches, UNIT_SUFFIXES};
use std::path::Path;

/// The units step: the units attached, each with the image it comes from (the base's first,
/// then each extension's; the first of a name wins), and the refusals of what was found.
pub(super) fn attached_units<'a>(
    r: &mut Report,
    layers: &Layers<'a>,
    matches: &[String],
    options: &Options,
) -> anyhow::Result<Vec<(Unit, &'a Image)>> {
    let mut search = Search {
        layers,
        matches,
        options,
        units: Vec::new(),
        masked_attached: 0,
    };
    for image in layers.images() {
        for dir in unit_dirs(options.systemd) {
            let Some(names) = children(image, dir) else {
                continue;
            };
            for (name, node) in names {
                search.consider(r, image, dir, name, node)?;
            }
        }
    }
    if search.units.is_empty() && search.masked_attached == 0 {
        r.error(Finding::refused(format!(
            "Couldn't find any matching unit files in image '{}', refusing.",
            layers.base.path
        )));
    } else if search.units.is_empty() {
        only_masked_units(r, options.systemd);
    }
    if rules_of(options.systemd) < PROFILES_SERVICES_ONLY {
        no_profile_but_services(r, &search.units, options.systemd);
    }
    Ok(search.units)
}

/// The units found so far, as portabled goes through the unit directories.
struct Search<'s, 'a> {
    layers: &'s Layers<'a>,
    matches: &'s [String],
    options: &'s Options,
    units: Vec<(Unit, &'a Image)>,
    /// empty unit files portabled attaches all the same (before 252), masked
    masked_attached: usize,
}

/// What portabled makes of a file in a unit directory before it reads it.
enum Screen {
    /// Not a unit: said nowhere.
    Ignored,
    /// Not attached, for `why`; `passed_over`: its name stays free for a later directory's.
    Skipped {
        why: String,
        passed_over: bool,
    },
    Read,
}

impl<'a> Search<'_, 'a> {
    /// The file `name` in `dir` of `image`.
    fn consider(
        &mut self,
        r: &mut Report,
        image: &'a Image,
        dir: &str,
        name: String,
        node: &Node,
    ) -> anyhow::Result<()> {
        if !matches!(node, Node::File { .. } | Node::Symlink(_)) || name.ends_with(".d") {
            return Ok(());
        }
        let Some(dot) = name.rfind('.') else {
            return Ok(());
        };
        // one systemd passes over doesn't take its name: a later directory's unit of that name
        // is attached instead (measured)
        if self.units.iter().any(|(u, _)| u.name == name)
            || r.skipped_units
                .iter()
                .any(|s| s.name == name && !s.passed_over)
        {
            return Ok(());
        }
        let from = format!("{}:/{dir}/{name}", image.name);
        match screen(
            &name,
            &name[dot..],
            node,
            self.matches,
            self.options.systemd,
        ) {
            Screen::Ignored => {}
            Screen::Skipped { why, passed_over } => r.skipped_units.push(SkippedUnit {
                name,
                from,
                why,
                passed_over,
            }),
            Screen::Read => self.read(r, image, dir, name, from)?,
        }
        Ok(())
    }

    /// The unit file `name` in `dir` of `image`, read as its unit sees it: attached, empty
    /// (masked), or skipped as unreadable.
    fn read(
        &mut self,
        r: &mut Report,
        image: &'a Image,
        dir: &str,
        name: String,
        from: String,
    ) -> anyhow::Result<()> {
        let content = self
            .layers
            .seen_from(image)
            .read(&Path::new(dir).join(&name));
        match content {
            Ok(c) if c.iter().all(u8::is_ascii_whitespace) => {
                self.masked_attached += usize::from(empty_unit(r, &name, from, self.options));
            }
            Ok(c) => self.units.push((
                Unit {
                    name,
                    from,
                    content: String::from_utf8_lossy(&c).into_owned(),
                },
                image,
            )),
            Err(e) => r.skipped_units.push(SkippedUnit {
                name,
                from,
                why: format!("can't be read: {:#}", unjudgeable(e)?),
                passed_over: false,
            }),
        }
        Ok(())
    }
}

/// What portabled makes of the file `name` (of `suffix`, a `node`) before it reads it: a type
/// it attaches, one of the matches, not masked by a link, nor (before
/// [`FOLLOWS_ABSOLUTE_UNIT_LINKS`]) an absolute link.
fn screen(name: &str, suffix: &str, node: &Node, matches: &[String], systemd: u32) -> Screen {
    let skipped = |why: String, passed_over| Screen::Skipped { why, passed_over };
    if !UNIT_SUFFIXES.contains(&suffix) {
        return if looks_like_unit(suffix) {
            skipped(format!("portabled never attaches a {suffix} unit"), false)
        } else {
            Screen::Ignored
        };
    }
    if !matches.iter().any(|m| unit_matches(m, name)) {
        let why = format!("no match: the matches are {}", matches.join(", "));
        return skipped(why, false);
    }
    match node {
        Node::Symlink(target) if target == Path::new("/dev/null") => {
            skipped("masked (a link to /dev/null)".into(), true)
        }
        Node::Symlink(target)
            if target.is_absolute() && rules_of(systemd) < FOLLOWS_ABSOLUTE_UNIT_LINKS =>
        {
            let why = format!(
                "a link to {}: systemd {} follows no absolute link to a unit \
                 (from {FOLLOWS_ABSOLUTE_UNIT_LINKS} on it does); make it relative",
                target.display(),
                systemd
            );
            skipped(why, true)
        }
        _ => Screen::Read,
    }
}

/// Before [`PROFILES_SERVICES_ONLY`], portabled refuses an image with a unit that is no
/// service: a masked unit (empty, or a link to /dev/null) is looked up too (measured: a socket
/// linked to /dev/null failed 239's attach).
fn no_profile_but_services(r: &mut Report, units: &[(Unit, &Image)], systemd: u32) {
    let attached = units.iter().map(|(u, _)| &u.name).chain(
        r.skipped_units
            .iter()
            .filter(|s| s.why.starts_with("empty: attached") || s.why.starts_with("masked"))
            .map(|s| &s.name),
    );
    let others: Vec<String> = attached
        .filter(|n| !n.ends_with(".service"))
        .cloned()
        .collect();
    if !others.is_empty() {
        r.error(Finding::refused(format!(
            "Failed to attach image: No such file or directory. (systemd {} looks for a \
             profile drop-in for every unit it attaches, and the profiles have one for \
             services only: it refuses {}, and the units it copied before stay behind; \
             from {PROFILES_SERVICES_ONLY} on a unit whose type has none gets none)",
            systemd,
            others.join(", ")
        )));
    }
}

/// Where portabled looks for unit files in an image, in its order (the first of a name wins).
/// Debian built 252 and 254 with `/lib` as systemd's own unit directory, which comes before
/// `/usr/lib` then (measured: of one name in both, those two attach `/lib`'s, 257 and 262
/// `/usr/lib`'s; tests/tests/acceptance/differential.rs); so do Ubuntu's 245 and 249 (built
/// split as Debian's), while RHEL 8 builds 239 for `/usr`, which comes first.
fn unit_dirs(systemd: u32) -> [&'static str; 5] {
    let (first, second) = if (245..257).contains(&rules_of(systemd)) {
        ("lib/systemd/system", "usr/lib/systemd/system")
    } else {
        ("usr/lib/systemd/system", "lib/systemd/system")
    };
    [
        "etc/systemd/system",
        "run/systemd/system",
        "usr/local/lib/systemd/system",
        first,
        second,
    ]
}

/// An empty unit file `name`, which systemd takes for a masked unit: before
/// [`PASSES_OVER_EMPTY_UNITS`] portabled attaches it all the same, from then on it is passed
/// over. Whether it is attached.
fn empty_unit(r: &mut Report, name: &str, from: String, options: &Options) -> bool {
    let attached = rules_of(options.systemd) < PASSES_OVER_EMPTY_UNITS;
    r.skipped_units.push(SkippedUnit {
        name: name.to_owned(),
        from,
        why: if attached {
            "empty: attached, and systemd takes an empty unit file for a masked unit"
        } else {
            "empty: systemd takes an empty unit file for a masked unit"
        }
        .into(),
        passed_over: !attached,
    });
    attached
}

/// An image whose units are all empty files: before [`PASSES_OVER_EMPTY_UNITS`] portabled
/// attaches them, masked, and none can start; an empty unit beside others is masked on purpose,
/// as a link to /dev/null is (the differential tests count neither).
fn only_masked_units(r: &mut Report, systemd: u32) {
    let masked: Vec<String> = r
        .skipped_units
        .iter()
        .filter(|s| s.why.starts_with("empty: attached"))
        .map(|s| s.name.clone())
        .collect();
    r.error(Finding::runs(format!(
        "{} empty: systemd {systemd} attaches an empty unit file as a masked unit, which can't \
         start, and the image has no other unit (from {PASSES_OVER_EMPTY_UNITS} on portabled \
         passes over it and refuses the image); give the unit its settings",
        masked.join(", ")
    )));
}

/// A suffix that reads like a unit type portabled skips (`.mount`, `.slice`, ...).
fn looks_like_unit(suffix: &str) -> bool {
    [
        ".mount",
        ".automount",
        ".swap",
        ".slice",
        ".scope",
        ".device",
    ]
    .contains(&suffix)
}

/// The entries directly inside `dir` of `image` (no symlink followed), if it is a directory.
fn children<'a>(image: &'a Image, dir: &str) -> Option<Vec<(String, &'a Node)>> {
    let dir = Path::new(dir);
    if !matches!(image.nodes.get(dir), Some(Node::Dir)) {
        return None;
    }
    Some(
        image
            .nodes
            .range(dir.to_path_buf()..)
            .skip(1)
            .take_while(|(p, _)| p.starts_with(dir))
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, n)| (p.file_name().unwrap().to_string_lossy().into_owned(), n))
            .collect(),
    )
}
