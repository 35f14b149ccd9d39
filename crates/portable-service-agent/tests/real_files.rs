//! The real host where it needs no system bus: its file primitives on a temporary directory,
//! the update lock, health commands, and the reading of portabled's drop-ins from a root
//! written here in the layouts of 239 and of 249 and newer.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portable_service_agent::host::{Attachment, Host};
use portable_service_agent::real::dropins::{self, Found};
use portable_service_agent::real::{RealHost, Settings};

/// A fresh, empty directory of this test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("psa-real-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn host_in(dir: &TempDir) -> RealHost {
    RealHost::new(Settings {
        lock_dir: dir.0.join("lock"),
        root: dir.0.clone(),
        ..Settings::default()
    })
}

#[test]
fn create_writes_a_new_file_and_refuses_an_existing_one() {
    let dir = TempDir::new("create");
    let mut host = host_in(&dir);
    let path = dir.path("state");
    host.create(&path, b"one").unwrap();
    assert_eq!(host.read(&path).unwrap().unwrap(), b"one");
    let err = host.create(&path, b"two").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains(&path), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"one");
    host.sync_file(&path).unwrap();
    host.sync_dir(&dir.path("")).unwrap();
}

#[test]
fn create_refuses_a_symlink_and_leaves_its_target_untouched() {
    let dir = TempDir::new("symlink");
    let mut host = host_in(&dir);
    fs::write(dir.path("target"), b"keep").unwrap();
    symlink(dir.path("target"), dir.path("link")).unwrap();
    symlink(dir.path("nowhere"), dir.path("dangling")).unwrap();
    assert!(host.create(&dir.path("link"), b"evil").is_err());
    assert!(host.create(&dir.path("dangling"), b"evil").is_err());
    assert_eq!(fs::read(dir.path("target")).unwrap(), b"keep");
    assert!(!Path::new(&dir.path("nowhere")).exists());
}

#[test]
fn rename_replaces_the_target() {
    let dir = TempDir::new("rename");
    let mut host = host_in(&dir);
    host.create(&dir.path("a.new"), b"new").unwrap();
    host.create(&dir.path("a"), b"old").unwrap();
    host.rename(&dir.path("a.new"), &dir.path("a")).unwrap();
    assert_eq!(host.read(&dir.path("a")).unwrap().unwrap(), b"new");
    assert_eq!(host.read(&dir.path("a.new")).unwrap(), None);
}

#[test]
fn remove_of_a_missing_file_is_no_error_and_a_directory_is_refused() {
    let dir = TempDir::new("remove");
    let mut host = host_in(&dir);
    host.remove(&dir.path("missing")).unwrap();
    host.create(&dir.path("file"), b"x").unwrap();
    host.remove(&dir.path("file")).unwrap();
    assert!(!Path::new(&dir.path("file")).exists());
    host.make_dir(&dir.path("sub/deeper")).unwrap();
    assert!(host.remove(&dir.path("sub")).is_err());
    assert!(Path::new(&dir.path("sub/deeper")).is_dir());
}

#[test]
fn list_of_a_missing_directory_is_empty_and_names_come_sorted() {
    let dir = TempDir::new("list");
    let mut host = host_in(&dir);
    assert_eq!(
        host.list(&dir.path("missing")).unwrap(),
        Vec::<String>::new()
    );
    for name in ["b", "a", "c"] {
        host.create(&dir.path(name), b"").unwrap();
    }
    assert_eq!(host.list(&dir.path("")).unwrap(), ["a", "b", "c"]);
    host.sync_all().unwrap();
}

#[test]
fn a_held_lock_makes_another_host_wait_then_fail_within_its_limit() {
    let dir = TempDir::new("lock");
    let mut first = host_in(&dir);
    first.lock("app").unwrap();
    first.lock("app").unwrap(); // already held by this host
    let mut second = host_in(&dir);
    second.settings.limits.lock = Duration::from_secs(1);
    let start = Instant::now();
    let err = second.lock("app").unwrap_err().to_string();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(err.contains("another update or rollback of app"), "{err}");
    second.lock("other").unwrap();
    assert!(second.lock("../etc").is_err());
    drop(first);
    second.lock("app").unwrap();
}

#[test]
fn a_check_says_whether_its_command_exited_0() {
    let dir = TempDir::new("check");
    let mut host = host_in(&dir);
    let limit = Duration::from_secs(10);
    // sh: what any build sandbox has (nixpkgs' stdenv, the stand-in's busybox)
    assert!(host
        .run_check(&["sh".into(), "-c".into(), "exit 0".into()], limit)
        .unwrap());
    assert!(!host
        .run_check(&["sh".into(), "-c".into(), "exit 1".into()], limit)
        .unwrap());
    assert!(host
        .run_check(&["/nonexistent/check".into()], limit)
        .is_err());
    assert!(host.run_check(&[], limit).is_err());
}

/// Whether process `pid` is gone (or a zombie that no longer runs).
fn gone(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('Z'),
    }
}

#[test]
fn a_check_past_its_limit_is_killed_with_what_it_started() {
    let dir = TempDir::new("check-limit");
    let mut host = host_in(&dir);
    let (own, started) = (dir.path("own.pid"), dir.path("started.pid"));
    let script = format!("echo $$ >{own}; sleep 30 & echo $! >{started}; wait");
    let command = ["sh".to_string(), "-c".to_string(), script];
    let start = Instant::now();
    // a check that doesn't answer in time has failed (the version is not kept)
    let passed = host.run_check(&command, Duration::from_secs(1)).unwrap();
    assert!(!passed, "a check killed at its limit passed");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let own = fs::read_to_string(own).unwrap();
    let started = fs::read_to_string(started).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !(gone(own.trim()) && gone(started.trim())) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gone(own.trim()), "the command {own} still runs");
    assert!(
        gone(started.trim()),
        "the sleep {started} it started still runs"
    );
}

/// Writes `text` at `path` under `root`, with its parents.
fn put(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn marker(images: &str) -> String {
    format!("# Drop-in created for image '{images}', do not edit.\n")
}

/// What portabled 249+ writes for a service: the marker, then its settings.
fn service_dropin(images: &str, settings: &str) -> String {
    format!(
        "{}\n[Service]\nRootImage={}\n{settings}",
        marker(images),
        images.split(':').next().unwrap()
    )
}

#[test]
fn attachments_are_read_from_the_marker_of_portableds_drop_ins() {
    let dir = TempDir::new("dropins");
    let root = &dir.0;
    let a = "etc/systemd/system.attached";
    let images = "/var/lib/app/app_2.raw:/var/lib/app/app-ext_3.raw";
    // a service from the base: no ExtensionImages= (portabled writes it only for a unit of an
    // extension), a socket (no settings at all), a template, a service from the extension
    put(root, &format!("{a}/app.service"), "[Service]\n");
    put(
        root,
        &format!("{a}/app.service.d/20-portable.conf"),
        &service_dropin(images, ""),
    );
    put(
        root,
        &format!("{a}/app.service.d/10-profile.conf"),
        "[Service]\nDynamicUser=yes\n",
    );
    put(root, &format!("{a}/app.socket"), "[Socket]\n");
    put(
        root,
        &format!("{a}/app.socket.d/20-portable.conf"),
        &marker(images),
    );
    put(root, &format!("{a}/app@.service"), "[Service]\n");
    put(
        root,
        &format!("{a}/app@.service.d/20-portable.conf"),
        &service_dropin(images, ""),
    );
    put(root, &format!("{a}/app-ext.service"), "[Service]\n");
    let ext = "ExtensionImages=/var/lib/app/app-ext_3.raw\n";
    put(
        root,
        &format!("{a}/app-ext.service.d/20-portable.conf"),
        &service_dropin(images, ext),
    );
    // enablement links beside them, and an attach cut short (drop-in, no unit file)
    fs::create_dir_all(root.join(format!("{a}/multi-user.target.wants"))).unwrap();
    put(
        root,
        &format!("{a}/cut.service.d/20-portable.conf"),
        &service_dropin("/d/cut_1.raw", ""),
    );
    // a runtime attachment whose path portabled escaped
    let r = "run/systemd/system.attached";
    put(root, &format!("{r}/odd.service"), "[Service]\n");
    put(
        root,
        &format!("{r}/odd.service.d/20-portable.conf"),
        &marker("/srv/odd\\x3a1.raw"),
    );

    let found = dropins::attachments(root).unwrap();
    let expected = vec![
        Found {
            image: "/srv/odd:1.raw".into(),
            extensions: vec![],
            units: vec!["odd.service".into()],
        },
        Found {
            image: "/var/lib/app/app_2.raw".into(),
            extensions: vec!["/var/lib/app/app-ext_3.raw".into()],
            units: [
                "app-ext.service",
                "app.service",
                "app.socket",
                "app@.service",
            ]
            .map(String::from)
            .to_vec(),
        },
    ];
    assert_eq!(found, expected);

    let mut host = host_in(&dir);
    let attached = host.attached().unwrap();
    assert_eq!(attached[1].image, "app_2.raw");
    assert_eq!(attached[1].extensions, ["app-ext_3.raw"]);
    assert_eq!(attached[0].image, "odd:1.raw");
}

#[test]
fn attachments_of_239_are_read_from_etc_systemd_system() {
    let dir = TempDir::new("dropins-239");
    let root = &dir.0;
    let s = "etc/systemd/system";
    put(root, &format!("{s}/old.service"), "[Service]\n");
    let dropin = format!(
        "{}\n[Service]\nRootImage=/d/old_1.raw\n",
        marker("/d/old_1.raw")
    );
    put(
        root,
        &format!("{s}/old.service.d/20-portable.conf"),
        &dropin,
    );
    put(root, &format!("{s}/old.timer"), "[Timer]\n");
    put(
        root,
        &format!("{s}/old.timer.d/20-portable.conf"),
        &marker("/d/old_1.raw"),
    );
    // the host's own units and drop-ins, not portabled's
    put(root, &format!("{s}/mine.service"), "[Service]\n");
    put(
        root,
        &format!("{s}/mine.service.d/override.conf"),
        "[Service]\nRootImage=/x.raw\n",
    );
    fs::create_dir_all(root.join(format!("{s}/multi-user.target.wants"))).unwrap();
    put(root, "run/systemd/system/rt.service", "[Service]\n");
    put(
        root,
        "run/systemd/system/rt.service.d/20-portable.conf",
        &marker("/d/rt_1.raw"),
    );

    let mut host = host_in(&dir);
    let attached = host.attached().unwrap();
    let attachment = |image: &str, units: &[&str]| Attachment {
        image: image.into(),
        extensions: vec![],
        units: units.iter().map(|u| u.to_string()).collect(),
    };
    assert_eq!(
        attached,
        [
            attachment("old_1.raw", &["old.service", "old.timer"]),
            attachment("rt_1.raw", &["rt.service"]),
        ]
    );
}

#[test]
fn without_a_marker_the_units_settings_name_the_images() {
    let dir = TempDir::new("dropins-settings");
    let root = &dir.0;
    let a = "etc/systemd/system.attached";
    put(root, &format!("{a}/fb.service"), "[Service]\n");
    let settings =
        "[Service]\nRootImage=/d/fb_1.raw\nExtensionImages=-/d/e1.raw:root:ro /d/e2.raw\n";
    put(
        root,
        &format!("{a}/fb.service.d/20-portable.conf"),
        settings,
    );
    put(
        root,
        &format!("{a}/fb.service.d/30-more.conf"),
        "[Service]\nExtensionImages=\"/d/e3.raw\"\n",
    );

    let found = dropins::attachments(root).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].image, PathBuf::from("/d/fb_1.raw"));
    let extensions: Vec<PathBuf> = ["/d/e1.raw", "/d/e2.raw", "/d/e3.raw"]
        .map(PathBuf::from)
        .to_vec();
    assert_eq!(found[0].extensions, extensions);

    // an empty ExtensionImages= resets the list, as systemd reads it; the last RootImage= wins
    let texts = [
        "RootImage=/d/a.raw\nExtensionImages=/d/x.raw\n".to_string(),
        "RootImage=/d/b.raw\nExtensionImages=\nExtensionImages=-/d/y.raw:usr:ro\n".to_string(),
    ];
    let (image, extensions) = dropins::parse_settings(&texts).unwrap();
    assert_eq!(image, PathBuf::from("/d/b.raw"));
    assert_eq!(extensions, [PathBuf::from("/d/y.raw")]);
    assert_eq!(
        dropins::parse_settings(&["[Service]\nUser=x\n".to_string()]),
        None
    );
}

#[test]
fn a_marker_without_extensions_or_with_several_is_read() {
    let (image, extensions) = dropins::parse_marker(&marker("/d/a_1.raw")).unwrap();
    assert_eq!((image, extensions), (PathBuf::from("/d/a_1.raw"), vec![]));
    let line = marker("/d/a_1.raw:/d/e_1.raw:/d/f_1.raw");
    let (_, extensions) = dropins::parse_marker(line.trim_end()).unwrap();
    assert_eq!(
        extensions,
        [PathBuf::from("/d/e_1.raw"), PathBuf::from("/d/f_1.raw")]
    );
    assert_eq!(dropins::parse_marker("# some other comment"), None);
}
