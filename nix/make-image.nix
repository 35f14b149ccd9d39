# What `portableService` and `portableServiceExtension` share: the one derivation whose
# structured attrs the builder reads (crates/portable-service-builder; its input schema is
# src/attrs.rs, its layouts src/plan/), from the arguments nix/image-args.nix has checked, and
# the image's attributes for other Nix code (`image`, `verity`, `check`, `sysupdate`,
# `portableService`).
# nix/portable-service.nix and nix/portable-service-extension.nix give each function its
# arguments; this file is not called by users.
#
# Only `builtins` is used, so this works inside nixpkgs (through the overlay) and without it:
# all it needs is a store path with bin/mksquashfs and one with bin/portable-service-builder
# (and, for `check`, one with bin/portable-service).
# `tools`: the packages and systems nix/function-tools.nix resolved.
{
  squashfsTools,
  # the package set's own squashfs package, in nixpkgs (see mksquashfsPackage below)
  hostSquashfsTools,
  portable-service-builder,
  portable-service-tools,
  # bin/portable-service-agent, for the image's `.sysupdate`; only that attribute needs it
  portable-service-agent,
  closureInfo,
  # where the derivation runs (nixpkgs' buildPlatform)
  system,
  # the system the image's programs are for (nixpkgs' hostPlatform), which a DDI's partition
  # types name
  hostSystem,
}@tools:

# `function`: the name errors start with. `extension`: null for a portable service image, else
# "sysext" or "confext". `again`: the function itself, which the image's `override` and
# `overrideAttrs` call with changed arguments.
{
  function,
  extension,
  again,
}:

# the arguments as the user gave them
args:

let
  inherit (builtins) stringLength;
  # what makes the image, for image-args.nix to check: not `kind` (the caller's `extension`),
  # `meta` or `passthru`, nor a `portablePrefixes` left null
  imageArgs = builtins.removeAttrs args (
    [
      "kind"
      "meta"
      "passthru"
      "minSystemd"
      "profile"
      "imagePolicy"
    ]
    ++ (if args.portablePrefixes or null == null then [ "portablePrefixes" ] else [ ])
  );
  a = import ./image-args.nix {
    inherit function extension;
    system = hostSystem;
  } imageArgs;
  inherit (a) base fileName;
  # The mksquashfs the derivation runs, on `system`: the build platform's, given or default, as
  # nixpkgs makes a nativeBuildInputs entry. A spliced package (callPackage's) gives its build
  # platform's; the package set's own squashfs package, given in a cross set, means the build
  # platform's, which is the default; one that says it runs elsewhere is refused here, since
  # the builder could not run it.
  mksquashfsPackage =
    let
      given = a.squashfsTools;
      attr = if args.squashfsTools or null != null then "squashfsTools" else "squashfs-tools";
      runsOn =
        if given ? stdenv.hostPlatform.system then
          given.stdenv.hostPlatform.system
        else if builtins.isAttrs given && given.type or null == "derivation" then
          given.system or null
        else
          null;
    in
    if given == null then
      tools.squashfsTools
    else if given ? __spliced.buildHost then
      given.__spliced.buildHost
    else if
      system != hostSystem && hostSquashfsTools != null && toString given == toString hostSquashfsTools
    then
      tools.squashfsTools
    else if runsOn != null && runsOn != system then
      a.fail attr given
        "is a mksquashfs for ${runsOn}, but the image is built on ${system}: give the build platform's (pkgs.buildPackages.squashfs-tools)"
    else
      given;

  # `parts`: each group's closure, less the groups' before it, compressed once in a derivation
  # of its own (the builder's part mode, crates/portable-service-builder/src/parts.rs) that
  # depends on the compression and on those closures alone, so that it is built once and
  # reused by every rebuild (and every image) that has them.
  partDrvs = if a.parts == "auto" then autoParts else namedParts;

  # `parts = "auto"`: the image's store paths and their sizes, listed by the builder (a build
  # at evaluation time: import from derivation) ...
  # (each path gets its context back below, one by one)
  listed = builtins.fromJSON (
    builtins.unsafeDiscardStringContext (
      builtins.readFile (derivation {
      name = "${a.pname}-store-paths";
      inherit system;
      builder = "${tools.portable-service-builder}/bin/portable-service-builder";
      __structuredAttrs = true;
      listClosure = true;
      exportReferencesGraph = {
        closure = a.roots;
      }
      // (if base == null then { } else { baseClosure = base.roots; });
      })
    )
  );
  # ... each of at least 4 MiB a part of its own, the smaller ones grouped by the first letter
  # of their hash (at most 32 parts: a changed small path rebuilds the one or two groups it
  # leaves and joins). Each part depends on its store paths alone. Below 64 MiB in all, no
  # parts: the derivations would cost more than they save.
  autoParts =
    let
      large = 4 * 1024 * 1024;
      total = builtins.foldl' (n: e: n + e.narSize) 0 listed;
      # the path, as a dependency of the derivation that reads it
      withContext =
        p:
        builtins.appendContext (builtins.unsafeDiscardStringContext p) {
          ${p} = {
            path = true;
          };
        };
      letter = p: builtins.substring 0 1 (baseNameOf p);
      small = builtins.filter (e: e.narSize < large) listed;
      groups = builtins.groupBy (e: letter e.path) small;
      part = name: entries: partDrv name { paths = map (e: withContext e.path) entries; };
    in
    if total < 64 * 1024 * 1024 then
      [ ]
    else
      map (e: part (nameOf e.path) [ e ]) (builtins.filter (e: e.narSize >= large) listed)
      ++ map (l: part "small-paths-${l}" groups.${l}) (builtins.attrNames groups);

  namedParts = builtins.genList (
    i:
    let
      roots = builtins.elemAt a.parts i;
      before = builtins.concatLists (builtins.genList (builtins.elemAt a.parts) i);
    in
    partDrv (nameOf (builtins.head roots)) {
      exportReferencesGraph = {
        closure = roots;
      }
      // (if before == [ ] then { } else { exclude = before; });
    }
  ) (builtins.length a.parts);

  # A part's derivation (the builder's part mode), named after a store path's name; `what`
  # says which store paths it holds.
  partDrv =
    name: what:
    derivation (
      {
        name = "${name}-squashfs-part";
        inherit system;
        builder = "${tools.portable-service-builder}/bin/portable-service-builder";
        __structuredAttrs = true;
        part = true;
        storeDir = builtins.storeDir;
        mksquashfs = "${mksquashfsPackage}/bin/mksquashfs";
        squash-compression = a.compression;
        squash-block-size = a.blockSize;
      }
      // what
    );
  # a store path's name without its hash
  nameOf =
    p:
    let
      base = builtins.unsafeDiscardStringContext (baseNameOf p);
    in
    builtins.substring 33 (stringLength base) base;

  drv = derivation {
    name = "${a.pname}-${if extension == null then "img" else extension}-${a.version}";
    inherit system;
    builder = "${tools.portable-service-builder}/bin/portable-service-builder";
    __structuredAttrs = true;
    storeDir = builtins.storeDir;
    pname = a.pname;
    version = a.version;
    description = a.description;
    homepage = a.homepage;
    units = a.units;
    symlinks = a.symlinks;
    contents = a.contents;
    files = a.files;
    portablePrefixes = a.prefixes;
    osRelease = a.osRelease.extra;
    osReleaseOverrides = a.osRelease.overrides;
    extension =
      if a.kind == null then
        null
      else
        {
          kind = a.kind;
          base =
            if base == null then
              null
            else
              {
                osRelease = base.release;
                inherit (base) units;
              };
        };
    mksquashfs = "${mksquashfsPackage}/bin/mksquashfs";
    squash-compression = a.compression;
    squash-block-size = a.blockSize;
    parts = map (p: "${p}/part.raw") partDrvs;
    verity = a.verity;
    format = a.format;
    inherit hostSystem;
    exportReferencesGraph = {
      closure = a.roots;
    }
    // (if base == null then { } else { baseClosure = base.roots; });
  };
  image = "${drv}/${fileName}";
  # With `verity`: the hash tree and root hash systemd looks for beside the image. A DDI holds
  # its hash tree itself; its root hash is beside it for hosts that take it unsigned.
  stem = builtins.substring 0 (stringLength fileName - 4) fileName;
  isDisk = a.format == "ddi";
  hasVerity = a.verity || isDisk;
  nakedVerity = a.verity && !isDisk;
  verityFiles =
    if hasVerity then
      {
        hashTree = if isDisk then null else "${drv}/${stem}.verity";
        rootHash = "${drv}/${stem}.roothash";
      }
    else
      null;

  # The oldest systemd the image's hosts run: null (not said) refuses nothing; a version refuses
  # here what needs a newer one, and `check` judges by its rules. The image itself doesn't
  # depend on it.
  minSystemd =
    let
      v = args.minSystemd or null;
    in
    if v == null then
      null
    else if !builtins.isInt v || v < 239 then
      a.fail "minSystemd" v
        "must be null or a systemd version from 239 (the first with portable services), such as 247 or 252"
    else
      v;
  # The profile the hosts attach with; `check` judges by it. It doesn't change the image.
  profile =
    let
      v = args.profile or null;
      shipped = [
        "default"
        "nonetwork"
        "strict"
        "trusted"
      ];
    in
    if v == null || builtins.elem v shipped then
      v
    else
      a.fail "profile" v "must be null or a profile systemd ships: ${builtins.concatStringsSep ", " shipped}";
  # The image policy (systemd's syntax) `check` holds the image to. It doesn't change the image;
  # its syntax is the check's to judge (by systemd's rules, naming the part at fault).
  imagePolicy =
    let
      v = args.imagePolicy or null;
    in
    if v == null || builtins.isString v then
      v
    else
      a.fail "imagePolicy" v
        "must be null or an image policy in systemd's syntax (a string), such as \"root=signed\"";
  # `what` came in systemd `since` (its sources; README's table has what the VMs measured)
  needs =
    what: since:
    if minSystemd != null && minSystemd < since then
      a.fail "minSystemd" minSystemd
        "is older than ${what}, which came in systemd ${toString since}: hosts of ${toString minSystemd} can't run it (README: \"Old hosts\")"
    else
      true;
  imageNeeds =
    if minSystemd == null then
      true
    else if extension == "confext" then
      needs "configuration extensions attached by portabled" 257
    else if extension != null then
      needs "extensions (`portablectl attach --extension`)" 249
    else
      let
        # 239's portabled looks for a profile drop-in for every unit and fails where the
        # profile has none, which it has for services only (measured)
        others = builtins.filter (n: builtins.match ".*[.]service" n == null) (
          map (u: u.name) a.units
        );
      in
      if others == [ ] then
        true
      else
        needs "attaching units other than services (${builtins.concatStringsSep ", " others}: 239 refuses them, \"No such file or directory\")" 245;

  # `portable-service`, which `check` and `sysupdate` run as their builder
  toolsFor =
    attr:
    if tools.portable-service-tools or null == null then
      throw "${function}: `${attr}` needs `portable-service-tools` (bin/portable-service) among the functions' packages"
    else
      "${tools.portable-service-tools}/bin/portable-service";

  # `portable-service check` on the image (an extension: on its base with it), as a
  # derivation that builds only if systemd would attach the image and its units can start. Its
  # output is the report.
  check = derivation {
    name = "${drv.name}-check";
    inherit system;
    builder = toolsFor "check";
    args = [
      "check"
      "--report"
      (builtins.placeholder "out")
    ]
    # the signature is made after the build, outside the store (`portable-service sign`);
    # a policy's "signed" is judged so too (an image without a hash tree can't be signed, and
    # the policy says so)
    ++ (
      if hasVerity || (base != null && base.verity) || imagePolicy != null then
        [ "--signed-later" ]
      else
        [ ]
    )
    ++ (
      if imagePolicy != null then
        [
          "--image-policy"
          imagePolicy
        ]
      else
        [ ]
    )
    # with the matches a host attaches with (portablectl's default, the image name, is one of
    # them unless `portablePrefixes` leaves out the pname)
    ++ builtins.concatMap (p: [
      "--prefix"
      p
    ]) a.prefixes
    ++ (
      if minSystemd != null then
        [
          "--systemd"
          (toString minSystemd)
        ]
      else
        [ ]
    )
    ++ (
      if profile != null then
        [
          "--profile"
          profile
        ]
      else
        [ ]
    )
    ++ (
      if extension == null then
        [ image ]
      else if base == null then
        throw "${function}: `check` needs `base`: an extension is checked over the image it extends"
      else
        [
          base.image
          "--extension"
          image
        ]
    );
  };

  # The host's side of a feed that `portable-service publish` writes, to copy under /etc: the
  # agent (crates/portable-service-agent, static) and its configuration, the units that run it
  # to update, roll back and recover, and systemd-sysupdate's transfer definitions for those who
  # run systemd's updater themselves (crates/portable-service-tools/src/transfers.rs).
  sysupdate =
    {
      url,
      target ? "/var/lib/portables",
      keep ? 2,
      signed ? nakedVerity,
      health ? { },
      # an extension's base's own feed, fetched with it; null: the base as installed
      baseUrl ? null,
    }:
    let
      fail =
        attr: value: why:
        a.fail "sysupdate.${attr}" value why;
      rules = import ./rules.nix;
      # whether every character of `s` is an ASCII letter, digit or one of `punctuation`
      only =
        punctuation: s:
        builtins.all (c: builtins.match "[A-Za-z0-9]" c != null || builtins.elem c punctuation) (
          builtins.genList (i: builtins.substring i 1 s) (stringLength s)
        );
      checkedUrl =
        if !builtins.isString url || builtins.match "https?://.+" url == null then
          fail "url" url
            "must be an http:// or https:// URL: the directory of the feed, which systemd-sysupdate fetches SHA256SUMS from"
        else if !only rules.urlPunctuation url then
          fail "url" url
            "may hold only letters, digits and ${builtins.concatStringsSep "" rules.urlPunctuation} (percent-encode the rest): it is written into files that hosts run as root"
        else
          url;
      checkedTarget =
        if
          !builtins.isString target
          || builtins.match "/.*" target == null
          || !only rules.targetPunctuation target
          || builtins.match "(.*/)?\\.\\.?(/.*)?" target != null
        then
          fail "target" target
            "must be an absolute path on the host of letters, digits and ${builtins.concatStringsSep "" rules.targetPunctuation}, without . or .. components: it is written into files that hosts run as root"
        else
          target;
      checkedKeep =
        if !builtins.isInt keep || keep < 2 then
          fail "keep" keep
            "must be a whole number of at least 2: the version running and the one to roll back to"
        else
          keep;
      checkedSigned =
        if !builtins.isBool signed then
          fail "signed" signed "must be true or false"
        else if signed && !nakedVerity then
          fail "signed" signed
            "is for a naked image with `verity = true`, whose signature travels beside it (a DDI carries its own)"
        else
          signed;
      # how long a new version's units have to come up, then stay up, before it is kept
      healthKnown = [
        "timeout"
        "steady"
        "command"
      ];
      checkedCommand =
        let
          c = health.command or null;
        in
        if c == null then
          [ ]
        else if
          !builtins.isList c || c == [ ] || !builtins.all (w: builtins.isString w && w != "") c
        then
          fail "health.command" c
            "must be a non-empty list of strings: the program (an absolute path on the host) and its arguments"
        else if builtins.match "/.*" (builtins.head c) == null then
          fail "health.command" c "must start with an absolute path on the host"
        else
          c;
      checkedBaseUrl =
        if baseUrl == null then
          null
        else if extension == null then
          fail "baseUrl" baseUrl "is for an extension, whose base is fetched from its own feed"
        else if !builtins.isString baseUrl || builtins.match "https?://.+" baseUrl == null then
          fail "baseUrl" baseUrl "must be an http:// or https:// URL: the directory of the base's feed"
        else if !only rules.urlPunctuation baseUrl then
          fail "baseUrl" baseUrl
            "may hold only letters, digits and ${builtins.concatStringsSep "" rules.urlPunctuation} (percent-encode the rest)"
        else
          baseUrl;
      checkedHealth =
        if !builtins.isAttrs health then
          fail "health" health "must be an attribute set: { timeout = SECONDS; steady = SECONDS; }"
        else
          let
            unknown = builtins.filter (n: !builtins.elem n healthKnown) (builtins.attrNames health);
            seconds =
              n: default:
              let
                v = health.${n} or default;
              in
              if builtins.isInt v && v >= 1 then
                v
              else
                fail "health.${n}" v "must be a whole number of seconds, at least 1";
          in
          if unknown != [ ] then
            fail "health" health "knows only timeout, steady and command, not ${builtins.concatStringsSep ", " unknown}"
          else
            {
              timeout = seconds "timeout" 90;
              steady = seconds "steady" 10;
            };
      agent =
        if tools.portable-service-agent or null == null then
          throw "${function}: `sysupdate` needs `portable-service-agent` (bin/portable-service-agent, static, for the hosts) among the functions' packages"
        else
          "${tools.portable-service-agent}/bin/portable-service-agent";
      # systemd-sysupdate takes versions of these characters only (version_is_valid())
      checkedVersion =
        if builtins.match "[A-Za-z0-9.,_+-]+" a.version == null then
          a.fail "version" a.version
            "can't be updated by systemd-sysupdate, which takes versions of letters, digits and .,_+- only"
        else
          a.version;
    in
    builtins.deepSeq
      [
        checkedVersion
        checkedCommand
        checkedBaseUrl
        # the agent installs an extension's versions as NAME_VERSION.raw (measured: 252
        # refuses such an extension, 254 to 262 attach it)
        (
          if extension != null then
            needs "updating an extension, whose versions' files are named NAME_VERSION.raw (252 refuses them: \"lacks extension-release data\")" 254
          else
            true
        )
      ]
      (derivation {
        name = "${a.pname}-sysupdate";
        inherit system;
        builder = toolsFor "sysupdate";
        args = [
          "transfers"
          "--out"
          (builtins.placeholder "out")
          "--name"
          a.pname
          "--url"
          checkedUrl
          "--target"
          checkedTarget
          "--keep"
          (toString checkedKeep)
          "--health-timeout"
          (toString checkedHealth.timeout)
          "--health-steady"
          (toString checkedHealth.steady)
          "--agent"
          agent
        ]
        ++ builtins.concatMap (w: [
          "--health-command"
          w
        ]) checkedCommand
        ++ (
          if profile == null then
            [ ]
          else
            [
              "--profile"
              profile
            ]
        )
        ++ (if nakedVerity then [ "--verity" ] else [ ])
        ++ (if checkedSigned then [ "--signed" ] else [ ])
        ++ builtins.concatMap (p: [
          "--prefix"
          p
        ]) a.prefixes
        ++ (
          if extension == null then
            [ ]
          else if base == null then
            throw "${function}: `sysupdate` needs `base`: an extension is switched over the image it extends"
          else
            [
              "--base"
              base.pname
            ]
            ++ (
              if checkedBaseUrl == null then
                [ ]
              else
                [
                  "--base-url"
                  checkedBaseUrl
                ]
                # a naked base with verity = true: its hash tree, root hash and signature
                ++ (if base.verity && base.format == "squashfs" then [ "--base-verity" ] else [ ])
            )
        );
      });
  # What nixpkgs' derivations have, for code written against nixpkgs' portableService; an image
  # has no stdenv (docs/nixpkgs.md: "Overriding, `meta` and `passthru`").
  meta =
    (if a.description != null then { inherit (a) description; } else { })
    // (if a.homepage != null then { inherit (a) homepage; } else { })
    // args.meta or { };
  # nixpkgs' `passthru.tests`: the image's `check`, where it can be made (an extension is
  # checked over its base), beside the caller's own tests
  ownTests =
    if tools.portable-service-tools != null && (extension == null || base != null) then
      { inherit check; }
    else
      { };
  passthru =
    let
      given = args.passthru or { };
    in
    # (tests that aren't an attribute set are the caller's to keep as they are)
    given
    // (
      if builtins.isAttrs (given.tests or { }) then
        { tests = ownTests // given.tests or { }; }
      else
        { }
    );
  override = f: again (args // (if builtins.isFunction f then f args else f));
  overrideAttrs =
    f:
    let
      # the caller's passthru: the image's own `tests.check` is made again for the new image
      prev = args // {
        inherit meta;
        passthru = args.passthru or { };
      };
      # f prev, or f final prev as stdenv's overrideAttrs also takes it
      once = if builtins.isFunction f then f prev else f;
      changes = if builtins.isFunction once then f final prev else once;
      final = prev // changes;
      known = builtins.functionArgs again;
      unknown = builtins.filter (n: !(known ? ${n})) (builtins.attrNames changes);
    in
    if unknown != [ ] then
      throw "${function}: `overrideAttrs` sets ${
        builtins.concatStringsSep ", " (map (n: "`${n}`") unknown)
      }, which an image doesn't have: it is made by its own builder, not stdenv's phases, and takes only the function's arguments (${builtins.concatStringsSep ", " (builtins.attrNames known)})"
    else
      again (args // changes);
in
builtins.seq imageNeeds (builtins.seq profile (builtins.seq imagePolicy drv))
// {
  # nixpkgs' derivation is `pname = "${pname}-img"`, so that its name is "${pname}-${version}";
  # the derivation's own `pname`, which the builder names the file and os-release with, stays
  # the caller's
  pname = "${a.pname}-${if extension == null then "img" else extension}";
  # The image file itself, for other Nix code: "${img.image}" is <out>/<fileName>.
  inherit
    image
    fileName
    check
    sysupdate
    ;
  # what nixpkgs' image has as an attribute of its derivation: here made only when read, so
  # the image's derivation doesn't depend on it
  closureInfo =
    if closureInfo == null then
      throw "${function}: `closureInfo` needs nixpkgs' closureInfo function (give `pkgs`, or `closureInfo`)"
    else
      closureInfo { rootPaths = a.roots; };
  verity = verityFiles;
  # the derivations of `parts`, to build or copy to a cache ahead of the image
  parts = partDrvs;
  # What an extension needs to know of this image (see `base`).
  portableService = {
    inherit extension image;
    inherit (a) pname;
    inherit (a) release;
    inherit (a) roots;
    units = map (u: u.name) a.units;
    prefixes = a.prefixes;
    verity = hasVerity;
    inherit (a) format;
  };
}
// passthru
// {
  inherit
    meta
    passthru
    override
    overrideAttrs
    ;
}
