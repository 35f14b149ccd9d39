# What `portableService` and `portableServiceExtension` share: the one derivation whose
# structured attrs the builder reads (crates/portable-service-builder; its input schema is
# src/attrs.rs, its layouts src/plan/), from the arguments nix/image-args.nix has checked, and
# the image's attributes for other Nix code (`image`, `verity`, `check`, `portableService`).
# nix/portable-service.nix and nix/portable-service-extension.nix give each function its
# arguments; this file is not called by users.
#
# Only `builtins` is used, so this works inside nixpkgs (through the overlay) and without it:
# all it needs is a store path with bin/mksquashfs and one with bin/portable-service-builder
# (and, for `check`, one with bin/portable-service).
{
  squashfsTools,
  portable-service-builder,
  portable-service-tools ? null,
  system ? builtins.currentSystem,
  # the system the image's programs are for (nixpkgs' hostPlatform), which a DDI's partition
  # types name; the derivation itself runs on `system`
  hostSystem ? system,
}@tools:

# `function`: the name errors start with. `extension`: null for a portable service image, else
# "sysext" or "confext".
{ function, extension }:

args:

let
  inherit (builtins) stringLength;
  a = import ./image-args.nix {
    inherit function extension;
    system = hostSystem;
  } args;
  inherit (a) base fileName;
  mksquashfsPackage = if a.squashfsTools != null then a.squashfsTools else tools.squashfsTools;

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
  verityFiles =
    if hasVerity then
      {
        hashTree = if isDisk then null else "${drv}/${stem}.verity";
        rootHash = "${drv}/${stem}.roothash";
      }
    else
      null;

  # `portable-service check` on the image (an extension: on its base with it), as a
  # derivation that builds only if systemd would attach the image and its units can start. Its
  # output is the report.
  check = derivation {
    name = "${drv.name}-check";
    inherit system;
    builder =
      if tools.portable-service-tools or null == null then
        throw "${function}: `check` needs `portable-service-tools` (bin/portable-service) among the functions' packages"
      else
        "${tools.portable-service-tools}/bin/portable-service";
    args = [
      "check"
      "--report"
      (builtins.placeholder "out")
    ]
    # the signature is made after the build, outside the store (`portable-service sign`)
    ++ (
      if hasVerity || (base != null && base.verity) then
        [ "--signed-later" ]
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
in
drv
// {
  # The image file itself, for other Nix code: "${img.image}" is <out>/<fileName>.
  inherit image fileName check;
  verity = verityFiles;
  # What an extension needs to know of this image (see `base`).
  portableService = {
    inherit extension image;
    inherit (a) release;
    inherit (a) roots;
    units = map (u: u.name) a.units;
    prefixes = a.prefixes;
    verity = hasVerity;
    inherit (a) format;
  };
}
