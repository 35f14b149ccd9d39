# The tables the Nix function checks arguments against that the builder and the rules crate hold
# too, in one place on this side: tests/tests/nix_function.rs compares each with its Rust twin
# (names::UNIT_SUFFIXES, mksquashfs::COMPRESSORS and block_sizes(), os_release::IMAGE_FIELDS
# and ExtensionKind::release_fields(), mount_points::HIDDEN_BELOW, the formats and
# ddi::ARCHITECTURES' systems), so they can't drift.
let
  inherit (builtins) foldl' genList;
in
{
  # unit types portabled attaches
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
  # mksquashfs takes a block size that is a power of two from 4K to 1M
  blockSizes =
    let
      sizes = genList (i: foldl' (n: _: n * 2) 4096 (genList (x: x) i)) 9;
      kib = map (n: toString (n / 1024) + "K") sizes;
    in
    map toString sizes
    ++ kib
    ++ map (s: builtins.replaceStrings [ "K" ] [ "k" ] s) kib
    ++ [
      "1M"
      "1m"
    ];
  # the release fields an image writes itself; `extension`: null, "sysext" or "confext"
  ownedFields =
    extension:
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
  # what `format` may be: the file system alone, or a Discoverable Disk Image
  formats = [
    "squashfs"
    "ddi"
  ];
  # the Nix systems whose architecture the Discoverable Partitions Specification gives
  # partition types for (a DDI's partitions are typed by it)
  ddiSystems = [
    "x86_64-linux"
    "aarch64-linux"
    "i686-linux"
    "armv7l-linux"
    "armv6l-linux"
    "riscv64-linux"
    "powerpc64le-linux"
    "s390x-linux"
    "loongarch64-linux"
  ];
  # what `image.sysupdate`'s values may hold beside ASCII letters and digits, since they reach
  # transfer files, unit files and a script run as root on every host
  # (transfers::TARGET_PUNCTUATION and URL_PUNCTUATION)
  targetPunctuation = [
    "."
    "_"
    "/"
    "+"
    "-"
  ];
  urlPunctuation = [
    "-"
    "."
    "_"
    "~"
    ":"
    "/"
    "?"
    "#"
    "["
    "]"
    "@"
    "!"
    "$"
    "&"
    "("
    ")"
    "*"
    "+"
    ","
    ";"
    "="
    "%"
  ];
  # directories systemd mounts over when the service runs
  hiddenBelow = [
    "dev"
    "proc"
    "sys"
    "run"
    "tmp"
    "var/tmp"
  ];
}
