# The `portableServiceExtension` function: an extension image, <out>/<pname>.raw, that
# `portablectl attach --extension` layers over a portable service image (its `base`):
#   kind = "sysext"  (default): units, files and store paths below /usr, overlaid on the base's
#                    /usr, where the base keeps its store; only the store paths the base lacks.
#   kind = "confext": units and files below /etc (systemd 257 attaches these; 252 refuses them).
# nix/make-image.nix checks the arguments and makes the derivation.
{
  # a nixpkgs package set, for whatever of the rest isn't given (nix/function-tools.nix)
  pkgs ? null,
  # a package with bin/mksquashfs (4.5 or newer), by nixpkgs' name of today or of nixos-25.11
  squashfs-tools ? null,
  squashfsTools ? null,
  # a package with bin/portable-service-builder
  portable-service-builder ? null,
  # bin/portable-service, for the image's `.check`; only that attribute needs it
  portable-service-tools ? null,
  # bin/portable-service-agent, for the image's `.sysupdate`; only that attribute needs it
  portable-service-agent ? null,
  # nixpkgs' closureInfo function, for the image's `.closureInfo`; only that attribute needs it
  closureInfo ? null,
  # where the image's derivation runs; default: `pkgs`' build platform, else builtins.currentSystem
  system ? null,
  # the system the image's programs are for, when it is not `system` (a cross build)
  hostSystem ? null,
}@given:

let
  tools = import ./function-tools.nix (given // { function = "portableServiceExtension"; });
  portableServiceExtension =
    {
      pname,
      version,
      units,
      kind ? "sysext",
      base ? null,
      description ? null,
      homepage ? null,
      symlinks ? [ ],
      contents ? [ ],
      files ? [ ],
      portablePrefixes ? null,
      osRelease ? { },
      osReleaseOverrides ? { },
      squashfsTools ? null,
      squashfs-tools ? null,
      squash-compression ? "xz -Xdict-size 100%",
      squash-block-size ? "1M",
      # packages (or lists of them) whose closures are compressed apart, each in a
      # derivation of its own, and merged into the image: a rebuild compresses only what
      # changed (README: "Faster rebuilds")
      parts ? [ ],
      verity ? false,
      format ? "squashfs",
      # the oldest systemd the image's hosts run (README: "Old hosts"); null: not said
      minSystemd ? null,
      # the profile the hosts attach with (`portablectl attach --profile`), which `check`
      # judges by; null: portablectl's own, "default"
      profile ? null,
      # an image policy in systemd's syntax ("root=signed") that `check` holds the image to;
      # null: none
      imagePolicy ? null,
      meta ? { },
      passthru ? { },
    }@args:
    import ./make-image.nix tools {
      function = "portableServiceExtension";
      extension = kind;
      again = portableServiceExtension;
    } args;
in
portableServiceExtension
