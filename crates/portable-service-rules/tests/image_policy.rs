//! Image policies read and judged as systemd does: the strings systemd's own test
//! (src/test/test-image-policy.c, v256) takes and refuses, what its whole-string policies and
//! left-out designators mean, and what a user is told of an image that doesn't fit.

use portable_service_rules::image_policy::{
    judge_disk, judge_naked, parse, Designator, ImagePolicy, PolicyError, Protection, State,
};

fn policy(s: &str) -> ImagePolicy {
    parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// Whether two policies give every designator the same flags (systemd's "equivalent").
fn equivalent(a: &str, b: &str) -> bool {
    let (a, b) = (policy(a), policy(b));
    Designator::ALL
        .iter()
        .all(|d| a.flags(*d).0 == b.flags(*d).0)
}

#[test]
fn takes_the_strings_systemds_test_takes() {
    for s in [
        "",
        "-",
        "*",
        "~",
        "swap=open",
        "swap=open:root=signed",
        "swap=open:root=signed+read-only-on+growfs-off:=absent",
        "=-",
        "=",
        " root = verity + signed ",
    ] {
        assert!(parse(s).is_ok(), "{s:?}: {:?}", parse(s));
    }
}

#[test]
fn refuses_the_strings_systemds_test_refuses_naming_the_part() {
    let syntax = |s: &str| PolicyError::Syntax { rule: s.to_owned() };
    let designator = |s: &str| PolicyError::UnknownDesignator {
        designator: s.to_owned(),
    };
    let flag = |f: &str, r: &str| PolicyError::UnknownFlag {
        flag: f.to_owned(),
        rule: r.to_owned(),
    };
    let cases = [
        ("pfft", syntax("pfft")),
        ("öäüß", syntax("öäüß")),
        (":", syntax("")),
        ("root=signed:", syntax("")),
        ("a=", designator("a")),
        ("wowza=grbl", designator("wowza")),
        ("=a", flag("a", "=a")),
        ("==", flag("=", "==")),
        ("root=grbl", flag("grbl", "root=grbl")),
        ("root=signed+", flag("", "root=signed+")),
        (
            "root=verity:root=encrypted",
            PolicyError::Duplicate {
                designator: "root".into(),
            },
        ),
        (
            "=ignore:=open",
            PolicyError::Duplicate {
                designator: String::new(),
            },
        ),
    ];
    for (s, want) in cases {
        assert_eq!(parse(s), Err(want), "{s:?}");
    }
    let said = parse("root=verity+grbl").unwrap_err().to_string();
    assert!(
        said.contains("`grbl`") && said.contains("root=verity+grbl"),
        "{said}"
    );
    let said = parse("root=signed+squashfs").unwrap_err().to_string();
    assert!(said.contains("after systemd 256"), "{said}");
}

#[test]
fn whole_string_policies_mean_what_systemd_says() {
    for d in Designator::ALL {
        let (open, _) = policy("*").flags(d);
        assert!(open.allows_absent() && open.allows_unused() && open.allows_unprotected());
        assert_eq!(open.read_only(), None);
        assert!(policy("~").flags(d).0.forbids(), "{d:?}");
        assert!(policy("-").flags(d).0.passes_over(), "{d:?}");
        assert!(policy("").flags(d).0.passes_over(), "{d:?}");
    }
    let (root, _) = policy("*").flags(Designator::Root);
    assert!(root.allows_verity() && root.allows_signed());
    // a hash tree's partition is no data partition: it can't itself have dm-verity
    let (tree, _) = policy("*").flags(Designator::RootVerity);
    assert!(!tree.allows_verity() && !tree.allows_signed() && !tree.allows_encrypted());
}

#[test]
fn equivalent_forms_as_systemds_test_has_them() {
    for (a, b) in [
        ("", "-"),
        ("-", "=ignore"),
        ("-", "=absent+unused"),
        ("-", "root=ignore:=ignore"),
        ("*", "=open"),
        ("*", "=signed+verity+encrypted+unused+unprotected+absent"),
        ("~", "=absent"),
    ] {
        assert!(equivalent(a, b), "{a:?} and {b:?}");
    }
    assert!(!equivalent("*", "-") && !equivalent("-", "~"));
}

#[test]
fn a_designator_left_out_takes_the_default() {
    let p = policy("root=signed");
    for d in [Designator::Usr, Designator::Home, Designator::Swap] {
        assert!(p.flags(d).0.passes_over(), "{d:?} is ignored");
    }
    let p = policy("root=signed:=absent");
    assert!(p.flags(Designator::Usr).0.forbids());
}

#[test]
fn a_flag_group_left_unsaid_allows_all_of_it() {
    let (root, _) = policy("root=read-only-on").flags(Designator::Root);
    assert!(root.allows_signed() && root.allows_unprotected() && root.allows_absent());
    assert_eq!((root.read_only(), root.growfs()), (Some(true), None));
    let (root, _) = policy("root=-").flags(Designator::Root);
    assert!(root.allows_signed() && root.allows_absent());
}

#[test]
fn protection_partitions_follow_their_data_partitions_rule() {
    let p = policy("root=signed+read-only-on");
    for d in [Designator::RootVerity, Designator::RootVeritySig] {
        let (f, _) = p.flags(d);
        assert!(
            f.allows_unprotected() && !f.allows_absent(),
            "{d:?} must be there"
        );
        assert_eq!(
            f.read_only(),
            Some(true),
            "{d:?} takes root's read-only flag"
        );
    }
    // no signature asked for: the signature's partition has no rule made for it
    let p = policy("root=verity");
    assert!(!p.flags(Designator::RootVerity).0.allows_absent());
    assert!(p.flags(Designator::RootVeritySig).0.passes_over());
}

#[test]
fn wants_a_signature_only_where_a_hash_tree_alone_wont_do() {
    assert_eq!(policy("root=signed").wants_signature(), [Designator::Root]);
    assert_eq!(policy("=signed").wants_signature().len(), 2);
    for s in ["root=verity+signed", "root=verity", "*", "-", "~"] {
        assert!(policy(s).wants_signature().is_empty(), "{s:?}");
    }
}

fn state(protection: Protection, read_only: bool) -> State {
    State {
        protection,
        read_only,
        growfs: false,
        why: None,
    }
}

const SIGNED: Protection = Protection::Signed { verified: true };

/// A signed DDI's partitions, as systemd-repart and `sign` make them (read-only).
fn signed_disk(protection: Protection) -> Vec<(Designator, State)> {
    vec![
        (Designator::Root, state(protection, true)),
        (Designator::RootVerity, state(Protection::Unprotected, true)),
        (
            Designator::RootVeritySig,
            state(Protection::Unprotected, true),
        ),
    ]
}

#[test]
fn a_naked_image_is_judged_as_its_root() {
    let unprotected = state(Protection::Unprotected, false);
    let said = judge_naked(&policy("root=signed"), &unprotected);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("root is unprotected (no dm-verity)")
            && said[0].contains("`root=signed`")
            && said[0].ends_with("wants it signed"),
        "{said:?}"
    );
    assert!(judge_naked(&policy("root=signed"), &state(SIGNED, false)).is_empty());
    assert!(judge_naked(&policy("*"), &unprotected).is_empty());
    // systemd's "verity" is a hash tree without a signature
    let verity = state(Protection::Verity, false);
    assert!(judge_naked(&policy("root=verity+signed"), &verity).is_empty());
    assert_eq!(
        judge_naked(&policy("root=verity"), &state(SIGNED, false)).len(),
        1
    );
    // a signature nobody checked passes where a hash tree would
    let unchecked = state(Protection::Signed { verified: false }, false);
    assert!(judge_naked(&policy("root=verity+signed"), &unchecked).is_empty());
    assert_eq!(judge_naked(&policy("root=signed"), &unchecked).len(), 1);
    // one file system has no GPT flags, which systemd takes as off
    let said = judge_naked(&policy("root=signed+read-only-on"), &state(SIGNED, false));
    assert!(
        said.len() == 1 && said[0].contains("read-only flag off"),
        "{said:?}"
    );
    assert!(judge_naked(&policy("~"), &unprotected)[0].contains("absent"));
    assert!(judge_naked(&policy("-"), &unprotected)[0].contains("nothing to run"));
    // usr is not looked at for one file system
    assert!(judge_naked(&policy("root=open:usr=signed"), &unprotected).is_empty());
}

#[test]
fn a_disk_is_judged_partition_by_partition() {
    let signed = signed_disk(SIGNED);
    assert!(judge_disk(&policy("root=signed+read-only-on"), &signed).is_empty());
    assert!(judge_disk(&policy("*"), &signed).is_empty());
    let said = judge_disk(&policy("root=signed:usr=verity"), &signed);
    assert!(
        said.len() == 1 && said[0].starts_with("usr is absent"),
        "{said:?}"
    );
    let said = judge_disk(&policy("root=signed:root-verity-sig=absent"), &signed);
    assert!(
        said.len() == 1 && said[0].starts_with("root-verity-sig is there"),
        "{said:?}"
    );
    let said = judge_disk(&policy("~"), &signed);
    assert_eq!(said.len(), 3, "each partition there is refused: {said:?}");
}

#[test]
fn a_disk_without_signature_is_said_once() {
    let mut unsigned = signed_disk(Protection::Verity);
    unsigned.pop();
    let said = judge_disk(&policy("root=signed"), &unsigned);
    // its absent signature partition follows from root's fault and is not said again
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with("root has dm-verity but no signature"),
        "{said:?}"
    );
}

#[test]
fn partitions_passed_over_take_their_protection_with_them() {
    let said = judge_disk(
        &policy("root=signed:root-verity=ignore"),
        &signed_disk(SIGNED),
    );
    assert!(
        said.iter().any(|s| s.starts_with("root is unprotected")),
        "{said:?}"
    );
    let said = judge_disk(&policy("usr=signed"), &signed_disk(SIGNED));
    assert!(
        said.iter().any(|s| s.contains("finds no root file system")),
        "root left out is ignored: {said:?}"
    );
}

#[test]
fn gpt_flags_are_checked_where_the_policy_says_them() {
    let mut writable = signed_disk(SIGNED);
    writable[0].1.read_only = false;
    let said = judge_disk(&policy("root=signed+read-only-on"), &writable);
    assert!(
        said.len() == 1 && said[0].starts_with("root has GPT's read-only flag off"),
        "{said:?}"
    );
    assert!(judge_disk(&policy("root=signed"), &writable).is_empty());
    // root-verity and root-verity-sig take root's flags too, and are not said again
    let said = judge_disk(&policy("root=signed+growfs-on"), &signed_disk(SIGNED));
    assert!(
        said.len() == 1 && said[0].contains("growfs flag off"),
        "{said:?}"
    );
    let mut tree_writable = signed_disk(SIGNED);
    tree_writable[1].1.read_only = false;
    let said = judge_disk(&policy("root=signed+read-only-on"), &tree_writable);
    assert!(
        said.len() == 1 && said[0].starts_with("root-verity has GPT's read-only flag off"),
        "{said:?}"
    );
}
