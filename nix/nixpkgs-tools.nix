# What the image functions take from a nixpkgs package set. The image's derivation runs on the
# build platform, so its mksquashfs, builder and tools come from `buildPackages` (a native set
# is its own buildPackages); the agent, which `image.sysupdate` installs on the hosts, is the
# host platform's, static. Packages by today's names, with the older name where nixos-25.11
# still has only that one.
pkgs:

let
  build = pkgs.buildPackages;
  # nixpkgs renamed squashfsTools to squashfs-tools in 2026-02 (pkgs/by-name); the old name is
  # an alias there, gone with `allowAliases = false`
  squashfs = set: set.squashfs-tools or set.squashfsTools;
in
{
  squashfsTools = squashfs build;
  hostSquashfsTools = squashfs pkgs;
  # the overlay's packages where it is applied, else built with this set's Rust
  portable-service-builder = build.portable-service-builder or (build.callPackage ./builder.nix { });
  portable-service-tools = build.portable-service-tools or (build.callPackage ./tools.nix { });
  portable-service-agent =
    pkgs.portable-service-agent or ((pkgs.pkgsStatic or pkgs).callPackage ./agent.nix { });
  closureInfo = build.closureInfo or null;
  system = pkgs.stdenv.buildPlatform.system;
  hostSystem = pkgs.stdenv.hostPlatform.system;
}
