# The `portableService` function: checks its arguments at evaluation time, then writes them and
# the closure into the structured attrs of one derivation whose builder is
# portable-service-builder (crates/portable-service-builder; its input schema is src/attrs.rs).
#
# Only `builtins` is used, so this works inside nixpkgs (through the overlay) and without it:
# all it needs is a store path with bin/mksquashfs and one with bin/portable-service-builder.
{
  squashfsTools,
  portable-service-builder,
  system ? builtins.currentSystem,
}@tools:

let
  inherit (builtins)
    any
    concatStringsSep
    elem
    filter
    foldl'
    genList
    head
    isAttrs
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

  show = v: if isString v || isPath v then toJSON (toString v) else toJSON v;
  fail = attr: value: why: throw "portableService: `${attr}` = ${show value} ${why}";

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
in

{
  pname,
  version,
  units,
  description ? null,
  homepage ? null,
  symlinks ? [ ],
  contents ? [ ],
  squashfsTools ? null,
  squashfs-tools ? null,
  squash-compression ? "xz -Xdict-size 100%",
  squash-block-size ? "1M",
}@args:

let
  # `squashfs-tools` is the name nixpkgs moved to in 2026; both override the default.
  mksquashfsPackage =
    if args.squashfsTools or null != null then
      args.squashfsTools
    else if args.squashfs-tools or null != null then
      args.squashfs-tools
    else
      tools.squashfsTools;

  checkedPname =
    if !isString pname || match "[A-Za-z0-9.-]+" pname == null then
      fail "pname" pname "may hold only letters, digits, `-` and `.`: portablectl takes the image name from the file name `<pname>_<version>.raw` up to the first `_`"
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
      fail attr (builtins.attrNames u) "is an attribute set but neither a derivation nor { name; file; }"
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
      fail attr u "is not a unit file: give a derivation, a store path, a path, or { name = \"${checkedPname}@.service\"; file = ...; }";

  checkUnitName =
    i: u:
    let
      attr = "units[${toString i}].name";
      suffix = match ".*\\.([a-z]+)" u.name;
      pattern = "${escapeRegex checkedPname}(\\.(${concatStringsSep "|" unitSuffixes})|[-.@].*\\.[a-z]+)";
    in
    if suffix == null || !elem (head suffix) unitSuffixes then
      fail attr u.name "is not a unit type portabled attaches: the name must end in .${concatStringsSep ", ." unitSuffixes}"
    else if match pattern u.name == null || match ".*/.*" u.name != null then
      fail attr u.name "is never attached by portabled: a unit name must be `${checkedPname}.${head suffix}` or start with `${checkedPname}-`, `${checkedPname}.` or `${checkedPname}@`"
    else
      u;

  escapeRegex = builtins.replaceStrings [ "." ] [ "\\." ];

  checkedUnits =
    if !isList units || units == [ ] then
      fail "units" units "must be a non-empty list: portabled refuses an image without a unit"
    else
      let
        normalised = genList (i: checkUnitName i (normaliseUnit i (builtins.elemAt units i))) (length units);
        names = map (u: u.name) normalised;
        # The first unit whose name an earlier one has.
        repeated = filter (i: elem (builtins.elemAt names i) (genList (builtins.elemAt names) i)) (
          genList (i: i) (length names)
        );
      in
      if repeated != [ ] then
        fail "units[${toString (head repeated)}].name" (builtins.elemAt names (head repeated)) "is the name of an earlier unit: two units of one name"
      else
        normalised;

  # Paths inside the image, normalised the way the builder does.
  imagePath =
    attr: s:
    let
      parts = filter (c: isString c && c != "" && c != ".") (builtins.split "/" s);
    in
    if elem ".." parts then
      fail attr s "leaves the image root (`..`)"
    else if parts == [ ] then
      fail attr s "is the image root itself"
    else
      concatStringsSep "/" parts;

  reservedPaths = [
    "etc/os-release"
    "etc/machine-id"
    "etc/resolv.conf"
    "etc/systemd/system"
    "dev"
    "proc"
    "sys"
    "run"
    "tmp"
    "var/tmp"
    "var/lib"
    "var/cache"
    "var/log"
    (substring 1 (-1) builtins.storeDir)
  ] ++ map (u: "etc/systemd/system/${u.name}") checkedUnits;

  isBelow = parent: p: substring 0 (stringLength parent + 1) p == parent + "/";
  hiddenBelow = [
    "dev"
    "proc"
    "sys"
    "run"
    "tmp"
    "var/tmp"
  ];

  checkedSymlinks =
    let
      one =
        i: s:
        let
          attr = "symlinks[${toString i}]";
          path = imagePath "${attr}.symlink" s.symlink;
          earlier = genList (j: imagePath "symlinks[${toString j}].symlink" (builtins.elemAt symlinks j).symlink) i;
          clash = filter (r: r == path || isBelow path r || isBelow r path) (reservedPaths ++ earlier);
        in
        if !isAttrs s || !(s ? symlink) || !(s ? object) then
          fail attr s "must be an attribute set { object; symlink; }"
        else if any (h: isBelow h path) hiddenBelow then
          fail "${attr}.symlink" s.symlink "is below a directory systemd mounts over when the service runs"
        else if clash != [ ] then
          fail "${attr}.symlink" s.symlink "collides with /${head clash} in the image"
        else if !(isStorePathString "${s.object}") then
          fail "${attr}.object" s.object "must be a store path or a path inside one (e.g. \"\${pkgs.cacert}/etc/ssl\")"
        else
          {
            symlink = s.symlink;
            object = "${s.object}";
          };
    in
    if !isList symlinks then
      fail "symlinks" symlinks "must be a list of { object; symlink; }"
    else
      genList (i: one i (builtins.elemAt symlinks i)) (length symlinks);

  checkedContents =
    if !isList contents then
      fail "contents" contents "must be a list of derivations or store paths"
    else
      genList (
        i:
        let
          c = builtins.elemAt contents i;
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

  fileName = "${checkedPname}_${checkedVersion}.raw";

  drv = derivation {
    name = "${checkedPname}-img-${checkedVersion}";
    inherit system;
    builder = "${tools.portable-service-builder}/bin/portable-service-builder";
    __structuredAttrs = true;
    storeDir = builtins.storeDir;
    pname = checkedPname;
    version = checkedVersion;
    description = checkLine "description" description;
    homepage = checkLine "homepage" homepage;
    units = checkedUnits;
    symlinks = checkedSymlinks;
    contents = checkedContents;
    mksquashfs = "${mksquashfsPackage}/bin/mksquashfs";
    squash-compression = checkedCompression;
    squash-block-size = checkedBlockSize;
    # Nix 2.8 takes only store paths here, not paths inside them.
    exportReferencesGraph.closure = map storePathOf (
      map (u: u.file) checkedUnits ++ checkedContents ++ map (s: s.object) checkedSymlinks
    );
  };
in
drv
// {
  # The image file itself, for other Nix code: "${img.image}" is <out>/<pname>_<version>.raw.
  image = "${drv}/${fileName}";
  inherit fileName;
}
