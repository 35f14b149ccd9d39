# The `portableService` function: a systemd Portable Service image,
# <out>/<pname>_<version>.raw. Its arguments are those of the nixpkgs manual's page plus the
# ones README.md lists; nix/make-image.nix checks them and makes the derivation.
#
# Only `builtins` is used: give it a store path with bin/mksquashfs, one with
# bin/portable-service-builder and, for `.check`, one with bin/portable-service, or a nixpkgs
# package set as `pkgs` (the overlay passes its own).
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
  tools = import ./function-tools.nix (given // { function = "portableService"; });
  # The argument set is spelled out so that a misspelt argument is an error.
  portableService =
    {
      pname,
      version,
      units,
      description ? null,
      homepage ? null,
      symlinks ? [ ],
      contents ? [ ],
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
      # as nixpkgs' derivations have them; meta.description and meta.homepage default to the
      # image's description and homepage
      meta ? { },
      passthru ? { },
    }@args:
    import ./make-image.nix tools {
      function = "portableService";
      extension = null;
      # what the image's `override` and `overrideAttrs` call again
      again = portableService;
    } args;
in
portableService
