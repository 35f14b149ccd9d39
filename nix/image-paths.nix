# Where an image's entries go, checked at evaluation time as the builder's plan checks them
# (crates/portable-service-builder/src/plan/layout.rs and places.rs): the paths each kind of
# image keeps for itself, and the user's `files` and `symlinks`, each inside the root, not below
# what systemd mounts over, not on or inside another entry, and visible through an extension's
# overlay. nix/image-args.nix calls it with the checked names and units.
{
  # "${function}: `attr` = value why", the error every check throws
  fail,
  # null, "sysext" or "confext"
  extension,
  pname,
  units,
}:

args:

let
  inherit (builtins)
    any
    concatStringsSep
    elem
    elemAt
    filter
    genList
    head
    isAttrs
    isList
    isString
    length
    match
    stringLength
    substring
    ;

  inherit (import ./store-paths.nix) isStorePathString toStore;
  files = args.files or [ ];
  symlinks = args.symlinks or [ ];

  # Where the image's parts go (the builder's src/plan/layout.rs).
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
          "usr/lib/extension-release.d/extension-release.${pname}"
          unitDir
          storeInImage
        ]
      else
        [
          "etc/extension-release.d/extension-release.${pname}"
          unitDir
        ]
    )
    ++ map (u: "${unitDir}/${u.name}") units;

  isBelow = parent: p: substring 0 (stringLength parent + 1) p == parent + "/";
  directoriesBelowFree =
    if extension == null then
      [
        "var/lib"
        "var/cache"
        "var/log"
      ]
    else
      [ ];
  inherit (import ./rules.nix) hiddenBelow;

  # `given` (attribute `attr`) as a place for a new entry of the image; `earlier`: the places
  # taken by the entries before it.
  freePath =
    attr: given: earlier:
    let
      path = imagePath attr given;
      # below a mount point for the units' state, cache and logs, an entry is the image's own
      # (the builder's plan allows it there too); below anything else reserved it is not
      clash = filter (
        r: r == path || isBelow path r || (isBelow r path && !elem r directoriesBelowFree)
      ) (reservedPaths ++ earlier);
    in
    if any (h: isBelow h path) hiddenBelow then
      fail attr given "is below a directory systemd mounts over when the service runs"
    else if visibleBelow != null && !isBelow visibleBelow path then
      fail attr given
        "is outside /${visibleBelow}: an extension of this kind is overlaid on /${visibleBelow} only, so the service would not see it"
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
          fail "files" files
            "is for extension images; put files of a portable service image in a package of `contents`"
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
            fail "${attr}.object" s.object
              "must be a store path or a path inside one (e.g. \"\${pkgs.cacert}/etc/ssl\")"
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

in
{
  files = checkedFiles;
  symlinks = checkedSymlinks;
}
