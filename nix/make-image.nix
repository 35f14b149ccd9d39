# What `portableService` and `portableServiceExtension` share: the evaluation-time checks of their
# arguments, and the one derivation whose structured attrs the builder reads
# (crates/portable-service-builder; its input schema is src/attrs.rs, its layouts src/plan.rs).
# nix/portable-service.nix and nix/portable-service-extension.nix give each function its
# arguments; this file is not called by users.
#
# Only `builtins` is used, so this works inside nixpkgs (through the overlay) and without it:
# all it needs is a store path with bin/mksquashfs and one with bin/portable-service-builder.
{
  squashfsTools,
  portable-service-builder,
  system ? builtins.currentSystem,
}@tools:

# `function`: the name errors start with. `extension`: null for a portable service image, else
# "sysext" or "confext".
{ function, extension }:

args:

let
  inherit (builtins)
    any
    attrNames
    concatStringsSep
    elem
    elemAt
    filter
    foldl'
    genList
    head
    isAttrs
    isBool
    isList
    isPath
    isString
    length
    match
    stringLength
    substring
    toJSON
    ;

  unitSuffixes = [
    "service"
    "socket"
    "target"
    "timer"
    "path"
  ];
  compressors = [
    "gzip"
    "lzo"
    "lz4"
    "xz"
    "zstd"
    "lzma"
  ];
  # mksquashfs takes a block size that is a power of two from 4K to 1M.
  blockSizes =
    let
      sizes = genList (i: foldl' (n: _: n * 2) 4096 (genList (x: x) i)) 9;
      kib = map (n: toString (n / 1024) + "K") sizes;
    in
    map toString sizes ++ kib ++ map (s: builtins.replaceStrings [ "K" ] [ "k" ] s) kib ++ [
      "1M"
      "1m"
    ];

  # The release fields the image writes itself (os_release.rs holds the same lists).
  ownedFields =
    if extension == null then
      [
        "ID"
        "PRETTY_NAME"
        "BUILD_ID"
        "PORTABLE_ID"
        "PORTABLE_PREFIXES"
        "IMAGE_ID"
        "IMAGE_VERSION"
        "PORTABLE_PRETTY_NAME"
        "HOME_URL"
      ]
    else
      let
        prefix = if extension == "sysext" then "SYSEXT" else "CONFEXT";
      in
      [
        "ID"
        "${prefix}_SCOPE"
        "PORTABLE_PREFIXES"
        "VERSION_ID"
        "${prefix}_LEVEL"
        "PORTABLE_PRETTY_NAME"
        "HOME_URL"
      ];

  show = v: if isString v || isPath v then toJSON (toString v) else toJSON v;
  fail = attr: value: why: throw "${function}: `${attr}` = ${show value} ${why}";

  isDerivation = v: isAttrs v && v.type or null == "derivation";
  storePrefix = builtins.storeDir + "/";
  isStorePathString =
    v: isString v && substring 0 (stringLength storePrefix) v == storePrefix && builtins.hasContext v;
  # The name of /nix/store/<hash>-<name>: what follows the 32-character hash and its `-`.
  storeName = p: substring 33 (-1) (baseNameOf p);
  # The store path a path inside the store belongs to; `substring` keeps the string's context.
  storePathOf =
    s:
    let
      base = head (match "([^/]*).*" (substring (stringLength storePrefix) (-1) s));
    in
    substring 0 (stringLength storePrefix + stringLength base) s;
  # A path is copied to the store under a name a store path can hold (`demo@.service` can't).
  toStore =
    f:
    if isPath f then
      "${builtins.path {
        path = f;
        name = builtins.replaceStrings [ "@" ] [ "-at-" ] (baseNameOf f);
      }}"
    else
      "${f}";
  isImageName = s: isString s && match "[A-Za-z0-9.-]+" s != null;
  escapeRegex = builtins.replaceStrings [ "." ] [ "\\." ];

  pname = args.pname;
  version = args.version;
  units = args.units;
  symlinks = args.symlinks or [ ];
  contents = args.contents or [ ];
  files = args.files or [ ];
  osRelease = args.osRelease or { };
  osReleaseOverrides = args.osReleaseOverrides or { };
  squash-compression = args.squash-compression or "xz -Xdict-size 100%";
  squash-block-size = args.squash-block-size or "1M";

  # `squashfs-tools` is the name nixpkgs moved to in 2026; both override the default.
  mksquashfsPackage =
    if args.squashfsTools or null != null then
      args.squashfsTools
    else if args.squashfs-tools or null != null then
      args.squashfs-tools
    else
      tools.squashfsTools;

  checkedPname =
    if !isImageName pname then
      fail "pname" pname "may hold only letters, digits, `-` and `.`: portablectl takes the image name from the file name up to the first `_`"
    else
      pname;

  checkedVersion =
    if !isString version || match "[A-Za-z0-9+._?=-]+" version == null then
      fail "version" version "must be a non-empty string of letters, digits and `+-._?=` (no `/`): it is part of the image's file name and of the store name"
    else
      version;

  checkLine =
    attr: v:
    if v == null then
      null
    else if !isString v then
      fail attr v "must be a string or null"
    else if match "[^[:cntrl:]]*" v == null then
      fail attr v "must fit on one line: os-release values can't hold a newline or other control character"
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
      fail "portablePrefixes[${toString (head bad)}]" (elemAt given (head bad)) "must hold only letters, digits, `-` and `.`, like an image name"
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
      fail "base" (if isAttrs b then b.name or (attrNames b) else b) "is not an image made by portableService"
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
          fail name value "has a key that is not an os-release key (upper-case letters, digits and `_`, starting with a letter)"
        else if attr == "osRelease" && elem key ownedFields then
          fail name value "is written by the image itself; to replace it, put it in `osReleaseOverrides`"
        else if attr == "osReleaseOverrides" && key == "PORTABLE_PREFIXES" then
          fail name value "can't be overridden: give the prefixes as `portablePrefixes`, which the unit names are checked against"
        else if attr == "osReleaseOverrides" && !elem key ownedFields then
          fail name value "is not a field the image writes itself (${concatStringsSep ", " ownedFields}); put it in `osRelease`"
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
      fail attr u "is not a unit file: give a derivation, a store path, a path, or { name = \"${head checkedPrefixes}@.service\"; file = ...; }";

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
      fail attr u.name "is not a unit type portabled attaches: the name must end in .${concatStringsSep ", ." unitSuffixes}"
    else if !any (p: match (pattern p) u.name != null) checkedPrefixes || match ".*/.*" u.name != null then
      fail attr u.name "is never attached by portabled: a unit name must be ${allowed}"
    else if base != null && elem u.name base.units then
      fail attr u.name "is a unit of the base image too; portabled would attach the base's and ignore this one"
    else
      u;

  checkedUnits =
    if !isList units || units == [ ] then
      fail "units" units "must be a non-empty list: portabled refuses an image without a unit, and gives an extension's files only to its own units"
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
        fail "units[${toString (head repeated)}].name" (elemAt names (head repeated)) "is the name of an earlier unit: two units of one name"
      else
        normalised;

  # Where the image's parts go (the builder's plan.rs `Layout`).
  storeInImage = "usr/${substring 1 (-1) builtins.storeDir}";
  storeTop = head (match "/([^/]*).*" builtins.storeDir);
  unitDir = if extension == "sysext" then "usr/lib/systemd/system" else "etc/systemd/system";
  # For an extension: the one tree systemd overlays it on.
  visibleBelow =
    if extension == "sysext" then
      "usr"
    else if extension == "confext" then
      "etc"
    else
      null;

  # Paths inside the image, normalised the way the builder does.
  imagePath =
    attr: s:
    let
      parts = filter (c: isString c && c != "" && c != ".") (builtins.split "/" s);
    in
    if !isString s then
      fail attr s "must be a path inside the image, as a string"
    else if elem ".." parts then
      fail attr s "leaves the image root (`..`)"
    else if parts == [ ] then
      fail attr s "is the image root itself"
    else
      concatStringsSep "/" parts;

  reservedPaths =
    (
      if extension == null then
        hiddenBelow
        ++ [
          "etc/os-release"
          "etc/machine-id"
          "etc/resolv.conf"
          "etc/systemd/system"
          "var/lib"
          "var/cache"
          "var/log"
          storeTop
          storeInImage
        ]
      else if extension == "sysext" then
        [
          "usr/lib/extension-release.d/extension-release.${checkedPname}"
          unitDir
          storeInImage
        ]
      else
        [
          "etc/extension-release.d/extension-release.${checkedPname}"
          unitDir
        ]
    )
    ++ map (u: "${unitDir}/${u.name}") checkedUnits;

  isBelow = parent: p: substring 0 (stringLength parent + 1) p == parent + "/";
  hiddenBelow = [
    "dev"
    "proc"
    "sys"
    "run"
    "tmp"
    "var/tmp"
  ];

  # `given` (attribute `attr`) as a place for a new entry of the image; `earlier`: the places
  # taken by the entries before it.
  freePath =
    attr: given: earlier:
    let
      path = imagePath attr given;
      clash = filter (r: r == path || isBelow path r || isBelow r path) (reservedPaths ++ earlier);
    in
    if any (h: isBelow h path) hiddenBelow then
      fail attr given "is below a directory systemd mounts over when the service runs"
    else if visibleBelow != null && !isBelow visibleBelow path then
      fail attr given "is outside /${visibleBelow}: an extension of this kind is overlaid on /${visibleBelow} only, so the service would not see it"
    else if clash != [ ] then
      fail attr given "collides with /${head clash} in the image"
    else
      path;

  checkedFiles =
    let
      one =
        i: f:
        let
          attr = "files[${toString i}]";
          earlier = genList (j: imagePath "files[${toString j}].path" (elemAt files j).path) i;
        in
        if extension == null then
          fail "files" files "is for extension images; put files of a portable service image in a package of `contents`"
        else if !isAttrs f || !(f ? path) || !(f ? file) then
          fail attr f "must be an attribute set { path; file; }"
        else
          {
            path = "/" + freePath "${attr}.path" f.path earlier;
            file = toStore f.file;
          };
    in
    if !isList files then
      fail "files" files "must be a list of { path; file; }"
    else
      genList (i: one i (elemAt files i)) (length files);

  checkedSymlinks =
    let
      one =
        i: s:
        let
          attr = "symlinks[${toString i}]";
          earlier =
            map (f: substring 1 (-1) f.path) checkedFiles
            ++ genList (j: imagePath "symlinks[${toString j}].symlink" (elemAt symlinks j).symlink) i;
        in
        if !isAttrs s || !(s ? symlink) || !(s ? object) then
          fail attr s "must be an attribute set { object; symlink; }"
        else
          let
            path = freePath "${attr}.symlink" s.symlink earlier;
          in
          if !(isStorePathString "${s.object}") then
            fail "${attr}.object" s.object "must be a store path or a path inside one (e.g. \"\${pkgs.cacert}/etc/ssl\")"
          else
            builtins.seq path {
              symlink = s.symlink;
              object = "${s.object}";
            };
    in
    if !isList symlinks then
      fail "symlinks" symlinks "must be a list of { object; symlink; }"
    else
      genList (i: one i (elemAt symlinks i)) (length symlinks);

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

  checkedCompression =
    let
      words = filter (w: isString w && w != "") (builtins.split "[ \t]+" squash-compression);
    in
    if !isString squash-compression || words == [ ] || !elem (head words) compressors then
      fail "squash-compression" squash-compression "must start with a compressor mksquashfs knows: ${concatStringsSep ", " compressors}"
    else
      concatStringsSep " " words;

  checkedBlockSize =
    let
      s = toString squash-block-size;
    in
    if !elem s blockSizes then
      fail "squash-block-size" squash-block-size "must be a power of two from 4K to 1M, such as \"128K\", \"1M\" or 131072"
    else
      s;

  checkedVerity =
    let
      v = args.verity or false;
    in
    if !isBool v then
      fail "verity" v "must be true or false: whether the image gets a dm-verity hash tree and root hash beside it"
    else
      v;

  checkedKind =
    if extension != null && !elem extension [
      "sysext"
      "confext"
    ] then
      fail "kind" extension "must be \"sysext\" (files below /usr, store paths included) or \"confext\" (files below /etc)"
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

  drv = derivation {
    name = "${checkedPname}-${if extension == null then "img" else extension}-${checkedVersion}";
    inherit system;
    builder = "${tools.portable-service-builder}/bin/portable-service-builder";
    __structuredAttrs = true;
    storeDir = builtins.storeDir;
    pname = checkedPname;
    version = checkedVersion;
    description = checkLine "description" (args.description or null);
    homepage = checkLine "homepage" (args.homepage or null);
    units = checkedUnits;
    symlinks = checkedSymlinks;
    contents = checkedContents;
    files = checkedFiles;
    portablePrefixes = checkedPrefixes;
    osRelease = checkedOsRelease.extra;
    osReleaseOverrides = checkedOsRelease.overrides;
    extension =
      if checkedKind == null then
        null
      else
        {
          kind = checkedKind;
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
    squash-compression = checkedCompression;
    squash-block-size = checkedBlockSize;
    verity = checkedVerity;
    exportReferencesGraph = {
      closure = roots;
    }
    // (if base == null then { } else { baseClosure = base.roots; });
  };
  image = "${drv}/${fileName}";
  # With `verity`: the hash tree and root hash systemd looks for beside the image.
  stem = builtins.substring 0 (stringLength fileName - 4) fileName;
  verityFiles =
    if checkedVerity then
      {
        hashTree = "${drv}/${stem}.verity";
        rootHash = "${drv}/${stem}.roothash";
      }
    else
      null;

  # `portable-service-builder check` on the image (an extension: on its base with it), as a
  # derivation that builds only if systemd would attach the image and its units can start. Its
  # output is the report.
  check = derivation {
    name = "${drv.name}-check";
    inherit system;
    builder = "${tools.portable-service-builder}/bin/portable-service-builder";
    args = [
      "check"
      "--report"
      (builtins.placeholder "out")
    ]
    # the signature is made after the build, outside the store (`portable-service-builder sign`)
    ++ (
      if checkedVerity || (base != null && base.portableService.verity or false) then
        [ "--signed-later" ]
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
        ++ builtins.concatMap (p: [
          "--prefix"
          p
        ]) checkedPrefixes
    );
  };
in
drv
// {
  # The image file itself, for other Nix code: "${img.image}" is <out>/<fileName>.
  inherit image fileName check;
  verity = verityFiles;
  # What an extension needs to know of this image (see `base`).
  portableService = {
    inherit extension release image;
    inherit roots;
    units = map (u: u.name) checkedUnits;
    prefixes = checkedPrefixes;
    verity = checkedVerity;
  };
}
