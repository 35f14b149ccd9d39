//! The plan's own tests: every entry of a small image, and each rule refused alone.

use super::*;
use crate::attrs::{ClosureEntry, ExtensionKind, Symlink};

const H: &str = "0c7wkdmgpqnch9f84clfdjqxn7hznv2z";

fn sp(name: &str) -> Utf8PathBuf {
    format!("/nix/store/{H}-{name}").into()
}

fn attrs() -> Attrs {
    Attrs {
        outputs: [("out".to_owned(), sp("demo-img-1.0"))].into(),
        store_dir: "/nix/store".into(),
        pname: "demo".into(),
        version: "1.0".into(),
        description: Some("Demo".into()),
        homepage: None,
        units: vec![Unit {
            name: "demo.service".into(),
            file: sp("demo.service"),
        }],
        symlinks: vec![],
        contents: vec![sp("busybox")],
        mksquashfs: sp("squashfs-tools").join("bin/mksquashfs"),
        squash_compression: "xz".into(),
        squash_block_size: "1M".into(),
        closure: ["demo.service", "busybox", "cacert"]
            .map(|n| ClosureEntry {
                path: sp(n),
                references: vec![],
            })
            .to_vec(),
        ..Attrs::default()
    }
}

fn unit_text(_: &Utf8Path) -> Result<Vec<u8>> {
    Ok(b"[Service]\nExecStart=/bin/true\n".to_vec())
}

fn plan(a: &Attrs) -> Result<Plan> {
    Plan::new(a, unit_text)
}

fn err(a: &Attrs) -> String {
    format!("{:#}", plan(a).unwrap_err())
}

fn with_link(symlink: &str) -> Attrs {
    let mut a = attrs();
    a.symlinks.push(Symlink {
        symlink: symlink.into(),
        object: sp("cacert").join("etc/ssl"),
    });
    a
}

#[test]
fn lays_out_every_entry_of_the_root() {
    let p = plan(&attrs()).unwrap();
    let listing: Vec<String> = p
        .entries
        .iter()
        .map(|(path, e)| {
            let kind = match &e.source {
                Source::Directory => "dir".to_owned(),
                Source::Data(d) => format!("data {} bytes", d.len()),
                Source::Symlink(t) => format!("-> {t}"),
                Source::StorePath(s) => format!("store {s}"),
            };
            format!("{path} {:o} {kind}", e.mode)
        })
        .collect();
    let store = format!("/nix/store/{H}");
    let expected = [
        "dev 755 dir".to_owned(),
        "etc 755 dir".into(),
        "etc/machine-id 644 data 0 bytes".into(),
        "etc/os-release 644 data 144 bytes".into(),
        "etc/resolv.conf 644 data 0 bytes".into(),
        "etc/systemd 755 dir".into(),
        "etc/systemd/system 755 dir".into(),
        "etc/systemd/system/demo.service 644 data 30 bytes".into(),
        "nix 777 -> usr/nix".into(),
        "proc 755 dir".into(),
        "run 755 dir".into(),
        "sys 755 dir".into(),
        "tmp 755 dir".into(),
        "usr 755 dir".into(),
        "usr/nix 755 dir".into(),
        "usr/nix/store 755 dir".into(),
        format!("usr/nix/store/{H}-busybox 0 store {store}-busybox"),
        format!("usr/nix/store/{H}-cacert 0 store {store}-cacert"),
        format!("usr/nix/store/{H}-demo.service 0 store {store}-demo.service"),
        "var 755 dir".into(),
        "var/cache 755 dir".into(),
        "var/lib 755 dir".into(),
        "var/log 755 dir".into(),
        "var/tmp 755 dir".into(),
    ];
    assert_eq!(listing, expected);
}

#[test]
fn symlinks_get_their_parents_and_point_to_the_object() {
    let p = plan(&with_link("/usr/share/ca/ssl")).unwrap();
    assert_eq!(
        p.entries[Utf8Path::new("usr/share/ca/ssl")].source,
        Source::Symlink(sp("cacert").join("etc/ssl"))
    );
    for parent in ["usr", "usr/share", "usr/share/ca"] {
        assert_eq!(
            p.entries[Utf8Path::new(parent)].source,
            Source::Directory,
            "{parent}"
        );
        assert_eq!(p.entries[Utf8Path::new(parent)].mode, 0o755);
    }
    // the manual's form, and a relative one, land at the same place
    assert!(plan(&with_link("etc/ssl"))
        .unwrap()
        .entries
        .contains_key(Utf8Path::new("etc/ssl")));
}

#[test]
fn symlinks_may_not_leave_the_root_or_land_on_other_entries() {
    let cases = [
        ("/../etc/ssl", "leaves the image root"),
        ("/", "is the image root itself"),
        ("/etc/os-release", "collides with /etc/os-release"),
        ("/etc/resolv.conf", "which is mount point"),
        ("/etc/systemd/system/demo.service", "unit demo.service"),
        ("/var/lib", "collides with /var/lib"),
        ("/etc", "collides with /etc"),
        ("/etc/os-release/x", "inside /etc/os-release"),
        ("/nix/store/x", "inside /nix, which is the store's symlink"),
        ("/usr/nix/store/x", "inside the store directory"),
        ("/run/x", "below /run"),
    ];
    for (link, why) in cases {
        let e = err(&with_link(link));
        assert!(e.contains(why), "{link}: {e}");
        assert!(e.contains("symlinks[0].symlink"), "{link}: {e}");
    }
    let mut a = with_link("/etc/ssl");
    a.symlinks.push(Symlink {
        symlink: "/etc/ssl/certs".into(),
        object: sp("cacert"),
    });
    let e = err(&a);
    assert!(
        e.contains("symlinks[1].symlink") && e.contains("symlink /etc/ssl (symlinks[0]"),
        "{e}"
    );
    let mut a = with_link("/etc/ssl");
    a.symlinks.push(a.symlinks[0].clone());
    assert!(err(&a).contains("collides with /etc/ssl"));
}

#[test]
fn unit_names_must_be_attachable() {
    for (name, why) in [
        ("demonstration.service", "starting with `demo-`"),
        ("other.service", "named `demo.service`"),
        ("demo.conf", "only attaches units ending in"),
        ("demo.mount", "only attaches units ending in"),
        ("demo-x/y.service", "starting with"),
    ] {
        let mut a = attrs();
        a.units[0].name = name.into();
        let e = err(&a);
        assert!(e.contains("units[0].name") && e.contains(name), "{e}");
        assert!(e.contains(why), "{name}: {e}");
    }
    for name in [
        "demo.service",
        "demo@.service",
        "demo-web.socket",
        "demo.x.timer",
    ] {
        let mut a = attrs();
        a.units[0].name = name.into();
        plan(&a).unwrap();
    }
}

#[test]
fn a_store_directory_below_a_directory_of_the_image_is_refused() {
    let mut a = attrs();
    let tmp_store = |n: &str| Utf8PathBuf::from(format!("/tmp/store/{H}-{n}"));
    a.store_dir = "/tmp/store".into();
    a.units[0].file = tmp_store("demo.service");
    a.contents = vec![tmp_store("busybox")];
    for c in a.closure.iter_mut() {
        c.path = tmp_store(c.path.file_name().unwrap().split_once('-').unwrap().1);
    }
    let e = err(&a);
    assert!(
        e.contains("attribute `storeDir` = \"/tmp/store\"") && e.contains("/tmp is mount point"),
        "{e}"
    );
}

fn extension(kind: ExtensionKind, base_units: &[&str]) -> Attrs {
    let mut a = attrs();
    a.extension = Some(crate::attrs::Extension {
        kind,
        base: Some(crate::attrs::Base {
            os_release: [("ID".to_owned(), "acme".to_owned())].into(),
            units: base_units.iter().map(|u| u.to_string()).collect(),
        }),
    });
    a.base_closure = vec![ClosureEntry {
        path: sp("busybox"),
        references: vec![],
    }];
    a
}

fn paths(p: &Plan) -> Vec<&str> {
    p.entries.keys().map(|k| k.as_str()).collect()
}

#[test]
fn a_system_extension_lies_below_usr_without_the_base_store_paths() {
    let p = plan(&extension(ExtensionKind::Sysext, &["demo-base.service"])).unwrap();
    let store = format!("usr/nix/store/{H}");
    assert_eq!(
        paths(&p),
        [
            "usr",
            "usr/lib",
            "usr/lib/extension-release.d",
            "usr/lib/extension-release.d/extension-release.demo",
            "usr/lib/systemd",
            "usr/lib/systemd/system",
            "usr/lib/systemd/system/demo.service",
            "usr/nix",
            "usr/nix/store",
            &format!("{store}-cacert"),
            &format!("{store}-demo.service"),
        ]
    );
    let Source::Data(release) =
        &p.entries[Utf8Path::new("usr/lib/extension-release.d/extension-release.demo")].source
    else {
        panic!("the release file is data")
    };
    assert!(
        release.starts_with(b"ID=acme\nSYSEXT_SCOPE=portable\nPORTABLE_PREFIXES=demo\n"),
        "{}",
        String::from_utf8_lossy(release)
    );
}

#[test]
fn an_extension_unit_the_base_has_is_refused() {
    let e = err(&extension(ExtensionKind::Sysext, &["demo.service"]));
    assert!(
        e.contains("`units[0].name` = \"demo.service\" is a unit of the base image too"),
        "{e}"
    );
}

#[test]
fn a_configuration_extension_carries_no_store_paths() {
    // its unit's own store file is copied; cacert is in neither the base nor the image
    let e = err(&extension(ExtensionKind::Confext, &[]));
    assert!(
        e.contains("attribute `base`: a configuration extension can't carry store paths")
            && e.contains(&format!("{H}-cacert")),
        "{e}"
    );
    let mut a = extension(ExtensionKind::Confext, &[]);
    a.closure.retain(|c| !c.path.as_str().ends_with("cacert"));
    let p = plan(&a).unwrap();
    assert!(p.store_paths.is_empty());
    assert!(
        paths(&p).iter().all(|path| path.starts_with("etc")),
        "{:?}",
        paths(&p)
    );
}

#[test]
fn two_units_of_one_name_are_an_error() {
    let mut a = attrs();
    a.units.push(a.units[0].clone());
    let e = err(&a);
    assert!(
        e.contains("units[1].name") && e.contains("two units of one name"),
        "{e}"
    );
}

#[test]
fn bad_pname_version_and_store_paths_are_named() {
    let mut a = attrs();
    a.pname = "my_demo".into();
    assert!(err(&a).contains("attribute `pname` = \"my_demo\""));
    let mut a = attrs();
    a.version = "1/2".into();
    assert!(err(&a).contains("attribute `version` = \"1/2\""));
    let mut a = attrs();
    a.units.clear();
    assert!(err(&a).contains("attribute `units` is empty"));
    let mut a = attrs();
    a.units[0].file = "/etc/demo.service".into();
    let e = err(&a);
    assert!(e.contains("`units[0].file` = \"/etc/demo.service\""), "{e}");
    let mut a = attrs();
    a.contents.push(sp("not-exported"));
    let e = err(&a);
    assert!(
        e.contains("contents[1]") && e.contains("not in `closure`"),
        "{e}"
    );
    let mut a = attrs();
    a.closure[0].path = "/nix/store/short".into();
    assert!(err(&a).contains("closure[0].path"));
}

#[test]
fn a_unit_that_cannot_be_read_or_is_empty_is_named() {
    let e = format!(
        "{:#}",
        Plan::new(&attrs(), |_| anyhow::bail!(
            "is a directory, not a regular file"
        ))
        .unwrap_err()
    );
    assert!(
        e.contains("units[0].file") && e.contains("not a regular file"),
        "{e}"
    );
    let e = format!("{:#}", Plan::new(&attrs(), |_| Ok(vec![])).unwrap_err());
    assert!(e.contains("is empty"), "{e}");
}

#[test]
fn state_directories_get_mount_points() {
    let p = Plan::new(&attrs(), |_| {
        Ok(b"[Unit]\nStateDirectory=not-a-service-setting\n[Service]\nStateDirectory=demo demo/sub:alias\n CacheDirectory = x\nLogsDirectory=demo-log\nStateDirectory=%i\nConfigurationDirectory=demo-conf\nStateDirectory=continued \\\n on-the-next-line\n".to_vec())
    })
    .unwrap();
    for dir in [
        "var/lib/demo",
        "var/lib/demo/sub",
        "var/cache/x",
        "var/log/demo-log",
        "etc/demo-conf",
        "var/lib/continued",
        "var/lib/on-the-next-line",
    ] {
        assert_eq!(
            p.entries[Utf8Path::new(dir)].source,
            Source::Directory,
            "{dir}"
        );
    }
    assert!(!p.entries.keys().any(|k| k.as_str().contains('%')));
    assert!(!p
        .entries
        .contains_key(Utf8Path::new("var/lib/not-a-service-setting")));
}

#[test]
fn a_store_directory_nix_would_not_write_is_named_not_a_panic() {
    for store_dir in [
        "",
        "/",
        "/.",
        "//",
        "nix/store",
        "/nix/../store",
        "/nix/store/",
        "/nix//store",
    ] {
        let mut a = attrs();
        a.store_dir = store_dir.into();
        let e = err(&a);
        assert!(
            e.contains(&format!(
                "attribute `storeDir` = {store_dir:?} must be an absolute path"
            )),
            "{store_dir:?}: {e}"
        );
    }
}
