# The evaluation-time checks of the arguments of `portableService` and
# `portableServiceExtension`: each bad argument fails here, naming the attribute and the value,
# before anything is built. What it returns is what nix/make-image.nix writes into the
# derivation, checked and normalised. The builder checks the same rules again
# (crates/portable-service-builder/src/plan/), and one table of inputs, refused and accepted,
# tests both (crates/portable-service-builder/tests/fixtures/inputs.json).
#
# Only `builtins` is used.
# `function`: the name errors start with. `extension`: null for a portable service image, else
# "sysext" or "confext".
# `system`: the system the image is built for, which a DDI's partition types name.
{
  function,
  extension,
  system,
}:

args:

let
  inherit (builtins)
    any
    attrNames
    concatStringsSep
    elem
    elemAt
    filter
    genList
    head
    isAttrs
    isBool
    isList
    isPath
    isString
    length
    match
    toJSON
    ;

  inherit (import ./store-paths.nix)
    isDerivation
    isStorePathString
    storeName
    storePathOf
    toStore
    ;

  # the tables the builder holds too (nix/rules.nix; a test compares them)
  rules = import ./rules.nix;
  inherit (rules) unitSuffixes compressors blockSizes;
  ownedFields = rules.ownedFields extension;

  show = v: if isString v || isPath v then toJSON (toString v) else toJSON v;
  fail =
    attr: value: why:
    throw "${function}: `${attr}` = ${show value} ${why}";

  isImageName = s: isString s && match "[A-Za-z0-9.-]+" s != null;
  escapeRegex = builtins.replaceStrings [ "." ] [ "\\." ];

  pname = args.pname;
  version = args.version;
  units = args.units;
  contents = args.contents or [ ];
  osRelease = args.osRelease or { };
  osReleaseOverrides = args.osReleaseOverrides or { };
  squash-compression = args.squash-compression or "xz -Xdict-size 100%";
  squash-block-size = args.squash-block-size or "1M";

  checkedPname =
    if !isImageName pname then
      fail "pname" pname
        "may hold only letters, digits, `-` and `.`: portablectl takes the image name from the file name up to the first `_`"
    else
      pname;

  checkedVersion =
    if !isString version || match "[A-Za-z0-9+._?=-]+" version == null then
      fail "version" version
        "must be a non-empty string of letters, digits and `+-._?=` (no `/`): it is part of the image's file name and of the store name"
    else
      version;

  checkLine =
    attr: v:
    if v == null then
      null
    else if !isString v then
      fail attr v "must be a string or null"
    else if match "[^[:cntrl:]]*" v == null then
      fail attr v
        "must fit on one line: os-release values can't hold a newline or other control character"
    else
      v;

  checkedPrefixes =
    let
      given = args.portablePrefixes or [ checkedPname ];
      bad = filter (i: !isImageName (elemAt given i)) (genList (i: i) (length given));
    in
    if !isList given || given == [ ] then
      fail "portablePrefixes" given "must be a non-empty list of unit prefixes"
    else if bad != [ ] then
      fail "portablePrefixes[${toString (head bad)}]" (elemAt given (
        head bad
      )) "must hold only letters, digits, `-` and `.`, like an image name"
    else
      given;

  # The base image an extension extends: a `portableService` image (its `portableService`
  # attribute says what an extension must know of it).
  base =
    let
      b = args.base or null;
    in
    if extension == null || b == null then
      null
    else if !isAttrs b || !(b ? portableService) || b.portableService.extension or null != null then
      fail "base" (
        if isAttrs b then b.name or (attrNames b) else b
      ) "is not an image made by portableService"
    else
      b.portableService;

  checkedOsRelease =
    let
      one =
        set: attr: key:
        let
          value = set.${key};
          name = "${attr}.${key}";
        in
        if match "[A-Z][A-Z0-9_]*" key == null then
          fail name value
            "has a key that is not an os-release key (upper-case letters, digits and `_`, starting with a letter)"
        else if attr == "osRelease" && elem key ownedFields then
          fail name value "is written by the image itself; to replace it, put it in `osReleaseOverrides`"
        else if attr == "osReleaseOverrides" && key == "PORTABLE_PREFIXES" then
          fail name value
            "can't be overridden: give the prefixes as `portablePrefixes`, which the unit names are checked against"
        else if attr == "osReleaseOverrides" && !elem key ownedFields then
          fail name value
            "is not a field the image writes itself (${concatStringsSep ", " ownedFields}); put it in `osRelease`"
        else
          checkLine name value;
      all =
        attr: set:
        if !isAttrs set then
          fail attr set "must be an attribute set of os-release fields"
        else
          builtins.mapAttrs (key: _: one set attr key) set;
    in
    {
      extra = all "osRelease" osRelease;
      overrides = all "osReleaseOverrides" osReleaseOverrides;
    };

  # A unit is a derivation, a store path (builtins.toFile, writeText), a path, or
  # { name; file; } for names a store path can't hold (templates: demo@.service).
  normaliseUnit =
    i: u:
    let
      attr = "units[${toString i}]";
    in
    if isDerivation u then
      {
        name = u.name;
        file = "${u}";
      }
    else if isAttrs u && u ? name && u ? file then
      {
        inherit (u) name;
        file = toStore u.file;
      }
    else if isAttrs u then
      fail attr (attrNames u) "is an attribute set but neither a derivation nor { name; file; }"
    else if isPath u then
      {
        name = baseNameOf u;
        file = toStore u;
      }
    else if isStorePathString u then
      {
        name = storeName u;
        file = u;
      }
    else
      fail attr u
        "is not a unit file: give a derivation, a store path, a path, or { name = \"${head checkedPrefixes}@.service\"; file = ...; }";

  checkUnitName =
    i: u:
    let
      attr = "units[${toString i}].name";
      suffix = match ".*\\.([a-z]+)" u.name;
      pattern = p: "${escapeRegex p}(\\.(${concatStringsSep "|" unitSuffixes})|[-.@].*\\.[a-z]+)";
      allowed = concatStringsSep "; or " (
        map (p: "`${p}.${head suffix}` or start with `${p}-`, `${p}.` or `${p}@`") checkedPrefixes
      );
    in
    if suffix == null || !elem (head suffix) unitSuffixes then
      fail attr u.name
        "is not a unit type portabled attaches: the name must end in .${concatStringsSep ", ." unitSuffixes}"
    else if
      !any (p: match (pattern p) u.name != null) checkedPrefixes || match ".*/.*" u.name != null
    then
      fail attr u.name "is never attached by portabled: a unit name must be ${allowed}"
    else if base != null && elem u.name base.units then
      fail attr u.name
        "is a unit of the base image too; portabled would attach the base's and ignore this one"
    else
      u;

  checkedUnits =
    if !isList units || units == [ ] then
      fail "units" units
        "must be a non-empty list: portabled refuses an image without a unit, and gives an extension's files only to its own units"
    else
      let
        normalised = genList (i: checkUnitName i (normaliseUnit i (elemAt units i))) (length units);
        names = map (u: u.name) normalised;
        # The first unit whose name an earlier one has.
        repeated = filter (i: elem (elemAt names i) (genList (elemAt names) i)) (
          genList (i: i) (length names)
        );
      in
      if repeated != [ ] then
        fail "units[${toString (head repeated)}].name" (elemAt names (
          head repeated
        )) "is the name of an earlier unit: two units of one name"
      else
        normalised;

  paths = import ./image-paths.nix {
    inherit fail extension;
    pname = checkedPname;
    units = checkedUnits;
  } args;
  checkedFiles = paths.files;
  checkedSymlinks = paths.symlinks;

  checkedContents =
    if !isList contents then
      fail "contents" contents "must be a list of derivations or store paths"
    else
      genList (
        i:
        let
          c = elemAt contents i;
          s = if isDerivation c || isPath c || isString c then toStore c else null;
        in
        if s == null || !isStorePathString s then
          fail "contents[${toString i}]" c "must be a derivation, a path or a store path"
        else
          s
      ) (length contents);

  # `parts`: groups of roots, each group's closure (less the groups' before it) compressed once
  # in a derivation of its own; each group is a list of store paths (a lone one stands for
  # itself)
  checkedParts =
    let
      ps = args.parts or [ ];
      one =
        attr: c:
        let
          s = if isDerivation c || isPath c || isString c then toStore c else null;
        in
        if s == null || !isStorePathString s then
          fail attr c "must be a derivation, a path or a store path (or a list of them)"
        else
          storePathOf s;
      group =
        i:
        let
          g = elemAt ps i;
          attr = "parts[${toString i}]";
        in
        if isList g then
          if g == [ ] then
            fail attr g "is an empty list: a part holds the closure of one or more packages"
          else
            genList (j: one "${attr}[${toString j}]" (elemAt g j)) (length g)
        else
          [ (one attr g) ];
    in
    if ps == "auto" && extension == "confext" then
      [ ]
    else if ps == "auto" && head (builtins.split "[ \t]+" (toString squash-compression)) == "lzo" then
      fail "parts" ps
        "can't be merged into an lzo image (squash-compression = ${show squash-compression}): the merge writes the image's tables with its compressor, and has no lzo; choose xz, zstd, gzip or lz4"
    else if ps == "auto" then
      ps
    else if !isList ps then
      fail "parts" ps
        "must be \"auto\" or a list of packages (or lists of packages) whose closures are compressed apart, such as [ pkgs.python3 [ pkgs.glibcLocales pkgs.tzdata ] ]"
    else if ps != [ ] && extension == "confext" then
      fail "parts" ps
        "can't be given for a configuration extension: it holds no store paths (it is overlaid on /etc only)"
    else if ps != [ ] && head (builtins.split "[ \t]+" (toString squash-compression)) == "lzo" then
      fail "parts" ps
        "can't be merged into an lzo image (squash-compression = ${show squash-compression}): the merge writes the image's tables with its compressor, and has no lzo; choose xz, zstd, gzip or lz4"
    else
      genList group (length ps);

  checkedCompression =
    let
      words = filter (w: isString w && w != "") (builtins.split "[ \t]+" squash-compression);
      # After the compressor, only its own options (`-X...`), each with at most one value: the
      # other mksquashfs options are the builder's, fixed so that the bytes depend on the inputs
      # (mksquashfs.rs holds the same rule).
      options = builtins.tail words;
      isCompressorOption = w: match "-X.+" w != null;
      allowed =
        i:
        isCompressorOption (elemAt options i)
        || (i > 0 && isCompressorOption (elemAt options (i - 1)) && match "-.*" (elemAt options i) == null);
      bad = filter (i: !allowed i) (genList (i: i) (length options));
    in
    if !isString squash-compression || words == [ ] || !elem (head words) compressors then
      fail "squash-compression" squash-compression
        "must start with a compressor mksquashfs knows: ${concatStringsSep ", " compressors}"
    else if bad != [ ] then
      fail "squash-compression" squash-compression
        "may hold after the compressor only its own options (`-X...`, each with its value), not `${elemAt options (head bad)}`: the builder sets mksquashfs's other options itself, so that an image's bytes depend on its inputs alone"
    else
      concatStringsSep " " words;

  checkedBlockSize =
    let
      s = toString squash-block-size;
    in
    if !elem s blockSizes then
      fail "squash-block-size" squash-block-size
        "must be a power of two from 4K to 1M, such as \"128K\", \"1M\" or 131072"
    else
      s;

  checkedVerity =
    let
      v = args.verity or false;
    in
    if !isBool v then
      fail "verity" v
        "must be true or false: whether the image gets a dm-verity hash tree and root hash beside it"
    else
      v;

  checkedFormat =
    let
      f = args.format or "squashfs";
    in
    if !elem f rules.formats then
      fail "format" f
        "must be \"squashfs\" (the file system alone, its hash tree beside it with `verity`) or \"ddi\" (a Discoverable Disk Image: the file system and its hash tree as partitions of one GPT disk file)"
    else if f == "ddi" && !elem system rules.ddiSystems then
      fail "system" system
        "has no partition types in the Discoverable Partitions Specification, so format = \"ddi\" can't be built for it (systems: ${concatStringsSep ", " rules.ddiSystems})"
    else
      f;

  checkedKind =
    if
      extension != null
      && !elem extension [
        "sysext"
        "confext"
      ]
    then
      fail "kind" extension
        "must be \"sysext\" (files below /usr, store paths included) or \"confext\" (files below /etc)"
    else
      extension;

  # systemd 252 refuses a versioned extension file name; the name is the one the
  # extension-release file carries.
  fileName =
    if extension == null then "${checkedPname}_${checkedVersion}.raw" else "${checkedPname}.raw";

  # What an extension must match of this image's os-release: ID, VERSION_ID and the levels.
  release =
    let
      final = checkedOsRelease.extra // checkedOsRelease.overrides;
    in
    {
      ID = final.ID or (if base != null then base.release.ID else "nixos");
    }
    // builtins.intersectAttrs {
      VERSION_ID = null;
      SYSEXT_LEVEL = null;
      CONFEXT_LEVEL = null;
    } (if extension == null then final else base.release or { });

  # The store paths whose closure goes into the image (Nix 2.8's exportReferencesGraph takes
  # only store paths, not paths inside them).
  roots = map storePathOf (
    map (u: u.file) checkedUnits
    ++ checkedContents
    ++ map (s: s.object) checkedSymlinks
    ++ map (f: f.file) checkedFiles
  );
in
{
  inherit
    fail
    base
    release
    roots
    fileName
    ;
  pname = checkedPname;
  version = checkedVersion;
  description = checkLine "description" (args.description or null);
  homepage = checkLine "homepage" (args.homepage or null);
  units = checkedUnits;
  symlinks = checkedSymlinks;
  contents = checkedContents;
  files = checkedFiles;
  prefixes = checkedPrefixes;
  osRelease = checkedOsRelease;
  kind = checkedKind;
  compression = checkedCompression;
  blockSize = checkedBlockSize;
  parts = checkedParts;
  verity = checkedVerity;
  format = checkedFormat;
  # `squashfs-tools` is the name nixpkgs moved to in 2026; both override the default.
  squashfsTools =
    if args.squashfsTools or null != null then
      args.squashfsTools
    else if args.squashfs-tools or null != null then
      args.squashfs-tools
    else
      null;
}
