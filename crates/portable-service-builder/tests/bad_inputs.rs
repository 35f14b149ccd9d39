//! The builder's side of the inputs table (tests/fixtures/inputs.json): every input the Nix
//! function refuses at evaluation time, the builder refuses too, naming the same attribute, and
//! every input the table says both accept, the builder accepts. The Nix side reads the same table
//! (tests/tests/nix_function.rs), so the two sets of rules can't drift apart either way.

use anyhow::Result;
use camino::Utf8Path;
use portable_service_builder::attrs::Attrs;
use serde_json::{json, Value};

const TABLE: &str = include_str!("fixtures/inputs.json");
const STORE: &str = "/nix/store";
const UNIT_TEXT: &str = "[Service]\nExecStart=/bin/true\n";

fn store_path(name: &str) -> String {
    format!("{STORE}/0c7wkdmgpqnch9f84clfdjqxn7hznv2z-{name}")
}

/// "@busybox/bin/sh" → the busybox store path's bin/sh, as tests/nix/bad-input.nix does.
fn reference(v: &Value) -> Value {
    match v.as_str().and_then(|s| s.strip_prefix('@')) {
        Some(rest) => {
            let (name, below) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            json!(format!("{}{below}", store_path(name)))
        }
        None => v.clone(),
    }
}

/// The attrs the Nix function would write for a case of the table, had it not checked them,
/// and the contents of its unit files and files by store path.
fn attrs_for(case: &Value) -> (Value, Vec<(String, String)>) {
    let args = &case["args"];
    let mut call = json!({
        "pname": "demo", "version": "1", "units": [ { "name": "demo.service" } ],
        "description": null, "homepage": null, "symlinks": [], "contents": [],
        "squash-compression": "xz -Xdict-size 100%", "squash-block-size": "1M",
    });
    for (key, value) in args.as_object().unwrap() {
        call[key] = value.clone();
    }
    let mut files = Vec::new();
    let units: Vec<Value> = call["units"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let file = store_path(&format!("unit-{i}"));
            let text = u["text"].as_str().unwrap_or(UNIT_TEXT);
            files.push((file.clone(), text.to_owned()));
            json!({ "name": u["name"], "file": file })
        })
        .collect();
    let listed: Vec<Value> = call["files"].as_array().cloned().unwrap_or_default();
    let file_list: Vec<Value> = listed
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let file = store_path(&format!("file-{i}"));
            files.push((file.clone(), f["text"].as_str().unwrap().to_owned()));
            json!({ "path": f["path"], "file": file })
        })
        .collect();
    let symlinks: Vec<Value> = call["symlinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({ "symlink": s["symlink"], "object": reference(&s["object"]) }))
        .collect();
    let contents: Vec<Value> = call["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(reference)
        .collect();
    let closure: Vec<Value> = files
        .iter()
        .map(|(f, _)| f.clone())
        .chain([store_path("busybox")])
        .map(|p| json!({ "path": p, "references": [] }))
        .collect();
    if let Some(kind) = case["extension"].as_str() {
        call["extension"] = json!({ "kind": kind, "base": null });
    }
    call["files"] = file_list.into();
    call["units"] = units.into();
    call["symlinks"] = symlinks.into();
    call["contents"] = contents.into();
    call["closure"] = closure.into();
    call["system"] = json!("x86_64-linux");
    call["hostSystem"] = case.get("system").cloned().unwrap_or(json!("x86_64-linux"));
    call["storeDir"] = json!(STORE);
    call["outputs"] = json!({ "out": store_path("demo-img-1") });
    call["mksquashfs"] = json!(store_path("squashfs-tools/bin/mksquashfs"));
    (call, files)
}

/// Every check the builder makes before it runs mksquashfs.
fn builder_checks(case: &Value) -> Result<()> {
    let (attrs, files) = attrs_for(case);
    let attrs = Attrs::from_json(&attrs.to_string())?;
    let read = |p: &Utf8Path| -> Result<Vec<u8>> {
        let found = files.iter().find(|(f, _)| f.as_str() == p.as_str());
        Ok(found
            .expect("a unit file of the table")
            .1
            .clone()
            .into_bytes())
    };
    portable_service_builder::prepare(&attrs, read).map(|_| ())
}

#[test]
fn every_accepted_input_of_the_table_is_accepted() {
    let table: Value = serde_json::from_str(TABLE).unwrap();
    let cases = table["accepted"].as_array().unwrap();
    assert!(cases.len() > 15, "the table is read whole");
    for case in cases {
        if let Err(e) = builder_checks(case) {
            panic!("refused: {case}\n{e:#}");
        }
    }
}

#[test]
fn the_base_call_of_the_table_is_accepted() {
    builder_checks(&json!({ "args": {} })).unwrap();
    builder_checks(&json!({ "args": {}, "extension": "sysext" })).unwrap();
    builder_checks(&json!({ "args": {}, "extension": "confext" })).unwrap();
}

#[test]
fn every_bad_input_of_the_table_is_refused_naming_its_attribute() {
    let table: Value = serde_json::from_str(TABLE).unwrap();
    let cases = table["refused"].as_array().unwrap();
    assert!(cases.len() > 60, "the table is read whole");
    for case in cases {
        let attribute = case["attribute"].as_str().unwrap();
        let error = match builder_checks(case) {
            Ok(()) => panic!("accepted: {case}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.starts_with(&format!("attribute `{attribute}`")),
            "{case}\nexpected it to name `{attribute}`, got: {error}"
        );
    }
}
