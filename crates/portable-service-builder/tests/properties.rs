//! Property tests: whatever the structured attrs hold (any JSON, any strings in every field, any
//! closure graph), the attrs reader and the image plan never panic, every error names the
//! attribute it is about, and a plan that is accepted is a well-formed tree. The number of cases
//! is fixed, so the run is bounded (PROPTEST_CASES overrides it for a longer search).

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use portable_service_builder::attrs::Attrs;
use portable_service_builder::plan::{Plan, Source};
use proptest::prelude::*;
use serde_json::{json, Value};

const FIXTURE: &str = include_str!("fixtures/nix-2.8.attrs.json");
const NIX_BASE32: &str = "0123456789abcdfghijklmnpqrsvwxyz";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        tricky_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings near the rules' edges: paths, unit names, specifiers, control characters, `..`.
fn tricky_string() -> impl Strategy<Value = String> {
    prop::string::string_regex(
        "(/|\\.\\.|\\.|demo|_|@|-|%i|\\.service|\\.socket|\\.mount|/nix/store/|etc|run|\n|\t|\u{e9}|[a-z0-9]{1,3}|=|\"|\\$)*",
    )
    .unwrap()
}

fn store_path_string() -> impl Strategy<Value = String> {
    let hash = prop::collection::vec(prop::sample::select(NIX_BASE32.as_bytes().to_vec()), 32)
        .prop_map(|b| String::from_utf8(b).unwrap());
    (hash, "[a-zA-Z0-9+._?=-]{1,12}").prop_map(|(h, n)| format!("/nix/store/{h}-{n}"))
}

/// What the attrs say of themselves when they are refused: an attribute, by name.
fn names_an_attribute(error: &str) {
    let named = error
        .strip_prefix("attribute `")
        .and_then(|rest| rest.split_once('`'))
        .is_some_and(|(name, _)| !name.is_empty() && name != ".");
    assert!(
        named || error.starts_with("the structured attrs "),
        "an error that names no attribute: {error}"
    );
}

/// A unit's content made from `seed`: empty, text, or bytes that aren't UTF-8.
fn unit_reader(seed: Vec<u8>) -> impl Fn(&Utf8Path) -> Result<Vec<u8>> {
    move |_| Ok(seed.clone())
}

/// Checks an accepted plan: every entry's parent is a directory of the plan, no path leaves the
/// root, and the files portabled reads are there.
fn well_formed(plan: &Plan) {
    for path in plan.entries.keys() {
        assert!(
            !path.as_str().is_empty() && !path.as_str().starts_with('/'),
            "{path}"
        );
        assert!(
            path.components()
                .all(|c| c.as_str() != ".." && c.as_str() != "."),
            "{path}"
        );
        if let Some(parent) = path.parent().filter(|p| !p.as_str().is_empty()) {
            assert_eq!(
                plan.entries.get(parent).map(|e| &e.source),
                Some(&Source::Directory),
                "the parent of {path}"
            );
        }
    }
    let release = plan.entries.keys().any(|k| {
        k == "etc/os-release"
            || k.parent()
                .is_some_and(|p| p.ends_with("extension-release.d"))
                && k.file_name()
                    .is_some_and(|n| n.starts_with("extension-release."))
    });
    assert!(release, "a release file in {:?}", plan.entries.keys());
    assert!(plan.entries.keys().any(|k| {
        ["etc/systemd/system", "usr/lib/systemd/system"]
            .iter()
            .any(|d| k.parent() == Some(Utf8Path::new(d)))
    }));
}

fn check(value: &Value, unit: Vec<u8>) {
    match Attrs::from_json(&value.to_string()) {
        Err(e) => names_an_attribute(&format!("{e:#}")),
        Ok(attrs) => match portable_service_builder::prepare(&attrs, unit_reader(unit)) {
            Err(e) => names_an_attribute(&format!("{e:#}")),
            Ok((_, plan)) => well_formed(&plan),
        },
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_json_is_read_or_refused_naming_an_attribute(value in any_json()) {
        check(&value, b"[Service]\n".to_vec());
    }

    #[test]
    fn any_value_in_any_field_is_read_or_refused_naming_it(
        changes in prop::collection::vec(
            (prop::sample::select(vec![
                "pname", "version", "description", "homepage", "units", "symlinks", "contents",
                "squash-compression", "squash-block-size", "storeDir", "outputs", "closure",
                "mksquashfs", "portablePrefixes", "osRelease", "osReleaseOverrides", "files",
                "extension", "baseClosure",
            ]), any_json()),
            1..4,
        ),
        unit in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut value: Value = serde_json::from_str(FIXTURE).unwrap();
        for (key, new) in changes {
            value[key] = new;
        }
        check(&value, unit);
    }

    #[test]
    fn any_strings_in_every_field_are_accepted_or_refused_naming_the_field(
        strings in prop::collection::vec(prop_oneof![tricky_string(), any::<String>()], 12),
        unit in prop_oneof![Just(b"[Service]\nStateDirectory=a b/c ../d %i\n".to_vec()),
                            prop::collection::vec(any::<u8>(), 0..40)],
    ) {
        let mut value: Value = serde_json::from_str(FIXTURE).unwrap();
        let s = |i: usize| Value::from(strings[i].clone());
        value["pname"] = s(0);
        value["version"] = s(1);
        value["description"] = s(2);
        value["homepage"] = s(3);
        value["units"][0]["name"] = s(4);
        value["units"][1]["name"] = json!(format!("demo{}", strings[5]));
        value["symlinks"][0]["symlink"] = s(6);
        value["symlinks"][0]["object"] = json!(format!("/nix/store/ap5lw0pk87zllpr8psdiqgxx50yqpp1h-busybox{}", strings[7]));
        value["squash-compression"] = json!(format!("xz {}", strings[8]));
        value["squash-block-size"] = s(9);
        value["contents"][0] = s(10);
        value["units"][2]["file"] = s(11);
        value["portablePrefixes"] = json!([strings[0].clone(), "demo"]);
        value["osRelease"] = json!({ strings[1].clone(): strings[2].clone() });
        value["osReleaseOverrides"] = json!({ "ID": strings[3].clone() });
        check(&value, unit);
        // the same strings in an extension's fields
        value["extension"] = json!({ "kind": "sysext", "base": { "osRelease": { "ID": strings[4].clone() }, "units": [strings[5].clone()] } });
        value["files"] = json!([{ "path": strings[6].clone(), "file": value["units"][0]["file"].clone() }]);
        check(&value, b"[Service]\n".to_vec());
    }

    #[test]
    fn any_closure_graph_is_laid_out_or_refused_naming_the_entry(
        paths in prop::collection::vec(prop_oneof![4 => store_path_string(), 1 => tricky_string()], 1..12),
        edges in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..30),
        roots in prop::collection::vec((0..3usize, any::<prop::sample::Index>()), 1..6),
        links in prop::collection::vec((tricky_string(), any::<prop::sample::Index>(), "(/[a-z]{0,3}){0,2}"), 0..4),
    ) {
        let mut closure: Vec<Value> = paths
            .iter()
            .map(|p| json!({ "path": p, "references": [] }))
            .collect();
        for (from, to) in edges {
            let to = paths[to.index(paths.len())].clone();
            closure[from.index(paths.len())]["references"].as_array_mut().unwrap().push(json!(to));
        }
        let mut units = Vec::new();
        let mut contents = Vec::new();
        for (i, (kind, at)) in roots.into_iter().enumerate() {
            let path = paths[at.index(paths.len())].clone();
            match kind {
                0 => units.push(json!({ "name": format!("demo-{i}.service"), "file": path })),
                _ => contents.push(json!(path)),
            }
        }
        let symlinks: Vec<Value> = links
            .into_iter()
            .map(|(link, at, below)| json!({
                "symlink": link,
                "object": format!("{}{below}", paths[at.index(paths.len())]),
            }))
            .collect();
        let mut value: Value = serde_json::from_str(FIXTURE).unwrap();
        if !units.is_empty() {
            value["units"] = units.into();
        }
        value["contents"] = contents.into();
        value["symlinks"] = symlinks.into();
        value["closure"] = closure.into();
        if let Ok(attrs) = Attrs::from_json(&value.to_string()) {
            if let Ok((_, plan)) = portable_service_builder::prepare(&attrs, unit_reader(b"[Unit]\n".to_vec())) {
                // every store path of the image is one of the closure's, each under its own name
                let closure: Vec<Utf8PathBuf> = attrs.closure.iter().map(|c| c.path.clone()).collect();
                for p in &plan.store_paths {
                    prop_assert!(closure.contains(p));
                }
            }
        }
        check(&value, b"[Unit]\n".to_vec());
    }
}
