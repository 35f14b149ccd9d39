//! The differential corpus: images generated from a seed, each varying something portabled or
//! systemd reads (the file name and its prefix, `PORTABLE_PREFIXES=`, os-release and its place,
//! units and their name, directory, form and programs, exec directories and mount points, the
//! matches passed), written by mksquashfs as another tool would write them. A case knows what
//! it is made of, never what systemd will do with it: that is measured
//! (tests/tests/acceptance/differential.rs, tests/differential.sh).
//!
//! Every name in case `N` begins with its tag `cNNN`, so that the cases of a batch can be
//! attached side by side without two of them offering one unit.

use fastrand::Rng;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// One entry of a generated tree.
#[derive(Debug, Clone)]
pub enum Entry {
    File {
        content: String,
        mode: u32,
    },
    Link(String),
    Dir,
    /// The static busybox tests/setup.sh stages, under the name given.
    Busybox,
}

/// A generated base image and how to attach it.
#[derive(Debug, Clone)]
pub struct Case {
    pub tag: String,
    pub file_name: String,
    /// Passed to `portablectl attach` after the image (none: portablectl's default).
    pub matches: Vec<String>,
    pub entries: BTreeMap<String, Entry>,
    /// What was chosen, for a reader of a disagreement.
    pub traits: Vec<String>,
}

/// `n` cases from `seed`: the same cases for the same seed.
pub fn cases(seed: u64, n: usize) -> Vec<Case> {
    let mut rng = Rng::with_seed(seed);
    (0..n).map(|id| case(&mut rng, id)).collect()
}

/// Picks one of `choices` by weight.
fn pick<T: Copy>(rng: &mut Rng, choices: &[(u32, T)]) -> T {
    let total: u32 = choices.iter().map(|(w, _)| w).sum();
    let mut at = rng.u32(0..total);
    for (w, c) in choices {
        if at < *w {
            return *c;
        }
        at -= w;
    }
    unreachable!("weights sum to {total}")
}

/// Where a generated unit lives and what it holds.
#[derive(Clone, Copy, Debug)]
enum Form {
    File,
    RelativeLink,
    AbsoluteLink,
    Masked,
    Empty,
}

#[derive(Clone, Copy, Debug)]
enum Program {
    Absolute,
    ByName,
    Missing,
    MissingIgnored,
    NotExecutable,
}

fn case(rng: &mut Rng, id: usize) -> Case {
    let tag = format!("c{id:03}");
    let app = format!("{tag}app");
    let web = format!("{tag}web");
    let mut c = Case {
        tag: tag.clone(),
        file_name: String::new(),
        matches: Vec::new(),
        entries: BTreeMap::new(),
        traits: Vec::new(),
    };

    let name = pick(
        rng,
        &[
            (4, "app_1"),
            (3, "app"),
            (1, "app_1_2"),
            (1, "app.v2"),
            (1, "app+x_1"),
        ],
    );
    c.file_name = format!("{tag}{name}.raw");

    // os-release, in its places
    let mut fields = Vec::new();
    if rng.u8(0..10) != 0 {
        fields.push("ID=corpus".to_owned());
    }
    if rng.bool() {
        fields.push("VERSION_ID=1".to_owned());
    }
    let prefixes = match pick(rng, &[(3, 0), (4, 1), (1, 2), (2, 3)]) {
        0 => None,
        1 => Some(app.clone()),
        2 => Some(web.clone()),
        _ => Some(format!("{app} {web}")),
    };
    if let Some(p) = &prefixes {
        fields.push(format!("PORTABLE_PREFIXES=\"{p}\""));
    }
    let os_release = fields.join("\n") + "\n";
    let place = pick(
        rng,
        &[
            (4, "usr/lib"),
            (2, "etc"),
            (1, "both, etc without PORTABLE_PREFIXES"),
            (2, "etc a link to usr/lib"),
            (1, "none"),
        ],
    );
    match place {
        "usr/lib" => c.file("usr/lib/os-release", &os_release, 0o644),
        "etc" => c.file("etc/os-release", &os_release, 0o644),
        "both, etc without PORTABLE_PREFIXES" => {
            c.file("usr/lib/os-release", &os_release, 0o644);
            c.file("etc/os-release", "ID=corpus\n", 0o644);
        }
        "etc a link to usr/lib" => {
            c.file("usr/lib/os-release", &os_release, 0o644);
            c.link("etc/os-release", "../usr/lib/os-release");
        }
        _ => {}
    }
    c.traits.push(format!(
        "{} os-release {:?} ({place})",
        c.file_name,
        fields.join(" ")
    ));

    // mount points, one of them sometimes missing
    let mut mount_points: Vec<&str> = portable_service_rules::mount_points::MOUNT_POINT_DIRS
        .iter()
        .chain(&portable_service_rules::mount_points::MOUNT_POINT_FILES)
        .copied()
        .collect();
    if rng.u8(0..8) == 0 {
        let gone = mount_points.remove(rng.usize(0..mount_points.len()));
        c.traits.push(format!("no /{gone}"));
    }
    for m in mount_points {
        if m.starts_with("etc/") {
            c.file(m, "", 0o644);
        } else {
            c.entries.insert(m.to_owned(), Entry::Dir);
        }
    }
    c.entries
        .insert("usr/bin/busybox".to_owned(), Entry::Busybox);
    c.link(&format!("usr/libexec/{tag}/true"), "/usr/bin/busybox");

    // units
    let dirs = [
        (4, "usr/lib/systemd/system"),
        (3, "etc/systemd/system"),
        (1, "lib/systemd/system"),
        (1, "usr/local/lib/systemd/system"),
    ];
    let kinds = [
        (5, "app.service"),
        (2, "app-x.service"),
        (2, "app@.service"),
        (2, "web.service"),
        (2, "app.socket"),
        (1, "app.mount"),
        (1, "shadowed"),
    ];
    for _ in 0..rng.u8(1..4) {
        match pick(rng, &kinds) {
            "shadowed" => {
                // one name twice: a working unit in one place, a failing one in another
                let name = format!("{tag}app-s.service");
                let good = service(&tag, Program::Absolute, None);
                let bad = service(&tag, Program::Missing, None);
                let (first, second) = if rng.bool() { (good, bad) } else { (bad, good) };
                c.file(&format!("etc/systemd/system/{name}"), &first.0, 0o644);
                c.file(&format!("usr/lib/systemd/system/{name}"), &second.0, 0o644);
                c.traits.push(format!(
                    "{name} in /etc ({}) and /usr/lib ({})",
                    first.1, second.1
                ));
            }
            kind => {
                let name = format!("{tag}{kind}");
                let dir = pick(rng, &dirs);
                let form = pick(
                    rng,
                    &[
                        (14, Form::File),
                        (2, Form::RelativeLink),
                        (1, Form::AbsoluteLink),
                        (1, Form::Masked),
                        (2, Form::Empty),
                    ],
                );
                let (content, said) = if kind.ends_with(".socket") {
                    let pre = rng.bool().then(|| format!("/usr/libexec/{tag}/true"));
                    let said = match &pre {
                        Some(p) => format!("ExecStartPre={p} (in the image only)"),
                        None => "no ExecStartPre".to_owned(),
                    };
                    let content = format!(
                        "[Socket]\nListenStream=/run/{tag}.sock\n{}",
                        pre.map(|p| format!("ExecStartPre={p}\n"))
                            .unwrap_or_default()
                    );
                    // and the service it starts
                    let s = service(&tag, Program::Absolute, None);
                    c.file(&format!("{dir}/{tag}app.service"), &s.0, 0o644);
                    (content, said)
                } else if kind.ends_with(".mount") {
                    (
                        format!("[Mount]\nWhat=tmpfs\nWhere=/run/{tag}\nType=tmpfs\n"),
                        "a mount unit".to_owned(),
                    )
                } else {
                    let program = pick(
                        rng,
                        &[
                            (10, Program::Absolute),
                            (2, Program::ByName),
                            (2, Program::Missing),
                            (1, Program::MissingIgnored),
                            (1, Program::NotExecutable),
                        ],
                    );
                    let directory = (rng.u8(0..3) == 0).then(|| exec_directory(rng, &mut c));
                    service(&tag, program, directory)
                };
                let at = format!("{dir}/{name}");
                match form {
                    Form::File => c.file(&at, &content, 0o644),
                    Form::RelativeLink | Form::AbsoluteLink => {
                        let real = format!("usr/share/{tag}/{name}");
                        c.file(&real, &content, 0o644);
                        let depth = at.matches('/').count();
                        let target = match form {
                            Form::RelativeLink => format!("{}{real}", "../".repeat(depth)),
                            _ => format!("/{real}"),
                        };
                        c.link(&at, &target);
                    }
                    Form::Masked => c.link(&at, "/dev/null"),
                    Form::Empty => c.file(&at, "", 0o644),
                }
                c.traits.push(format!("/{at} ({form:?}): {said}"));
            }
        }
    }

    c.matches = match pick(rng, &[(5, 0), (2, 1), (1, 2), (1, 3), (1, 4)]) {
        0 => vec![],
        1 => vec![app.clone()],
        2 => vec![web.clone()],
        3 => vec![app.clone(), web.clone()],
        _ => vec![format!("{app}-x")],
    };
    c.traits.push(format!("matches {:?}", c.matches));
    c
}

/// A oneshot service running `program` (and needing `directory`'s mount point, if given):
/// its text and what was chosen.
fn service(tag: &str, program: Program, directory: Option<String>) -> (String, String) {
    let exec = match program {
        Program::Absolute => "/usr/bin/busybox true".to_owned(),
        Program::ByName => "busybox true".to_owned(),
        Program::Missing => "/usr/bin/missing".to_owned(),
        Program::MissingIgnored => "-/usr/bin/missing".to_owned(),
        Program::NotExecutable => format!("/usr/libexec/{tag}/data"),
    };
    let mut text =
        format!("[Unit]\nDescription={tag}\n[Service]\nType=oneshot\nExecStart={exec}\n");
    let mut said = format!("ExecStart={exec}");
    if let Some(d) = directory {
        text.push_str(&d);
        said.push_str(&format!(", {}", d.trim()));
    }
    (text, said)
}

/// An exec-directory setting for a service, its mount point made or not.
fn exec_directory(rng: &mut Rng, c: &mut Case) -> String {
    let (setting, below) = pick(
        rng,
        &[
            (1, ("StateDirectory", Some("var/lib"))),
            (1, ("CacheDirectory", Some("var/cache"))),
            (1, ("LogsDirectory", Some("var/log"))),
            (1, ("ConfigurationDirectory", Some("etc"))),
            (1, ("RuntimeDirectory", None)),
        ],
    );
    let name = format!("{}d", c.tag);
    if let Some(below) = below {
        if rng.bool() {
            c.entries.insert(format!("{below}/{name}"), Entry::Dir);
            c.traits.push(format!("/{below}/{name} made"));
        }
    }
    format!("{setting}={name}\n")
}

impl Case {
    fn file(&mut self, path: &str, content: &str, mode: u32) {
        self.entries.insert(
            path.to_owned(),
            Entry::File {
                content: content.to_owned(),
                mode,
            },
        );
    }

    fn link(&mut self, path: &str, target: &str) {
        self.entries
            .insert(path.to_owned(), Entry::Link(target.to_owned()));
    }

    /// Writes the image into `dir` (which must not hold it yet); its path.
    pub fn build(&self, dir: &Path) -> PathBuf {
        let root = dir.join(format!("{}.root", self.tag));
        let data = format!("usr/libexec/{}/data", self.tag);
        let mut entries = self.entries.clone();
        entries.entry(data).or_insert(Entry::File {
            content: "not a program\n".into(),
            mode: 0o644,
        });
        for (path, entry) in &entries {
            let at = root.join(path);
            fs::create_dir_all(at.parent().unwrap()).unwrap();
            match entry {
                Entry::Dir => fs::create_dir_all(&at).unwrap(),
                Entry::File { content, mode } => {
                    fs::write(&at, content).unwrap();
                    fs::set_permissions(&at, fs::Permissions::from_mode(*mode)).unwrap();
                }
                Entry::Link(target) => symlink(target, &at).unwrap(),
                Entry::Busybox => {
                    fs::copy(
                        crate::repo().join("target/offline/busybox/bin/busybox"),
                        &at,
                    )
                    .expect("tests/setup.sh stages a static busybox");
                }
            }
        }
        let out = dir.join(&self.file_name);
        crate::squashfs_of(&root, &out);
        fs::remove_dir_all(&root).unwrap();
        out
    }
}
