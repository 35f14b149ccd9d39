# The packages and systems `portableService` and `portableServiceExtension` run with, from what
# their caller gave: each given one as it is, the rest from `pkgs` (a nixpkgs package set) when
# one is given. Given `pkgs`, nothing reads `builtins.currentSystem`, which pure evaluation (a
# flake's) refuses: the systems are that set's build and host platforms'.
#
# Only `builtins` is used, and `pkgs` only where something isn't given.
{
  pkgs ? null,
  squashfs-tools ? null,
  squashfsTools ? null,
  portable-service-builder ? null,
  portable-service-tools ? null,
  portable-service-agent ? null,
  # nixpkgs' closureInfo function, for the image's `closureInfo`; null: no such attribute
  closureInfo ? null,
  system ? null,
  hostSystem ? null,
  # `function`: the name errors start with
  function,
}@given:

let
  fromPkgs = if pkgs == null then { } else import ./nixpkgs-tools.nix pkgs;
  pick = name: if given.${name} or null != null then given.${name} else fromPkgs.${name} or null;
  system' =
    if pick "system" != null then
      pick "system"
    else if builtins ? currentSystem then
      builtins.currentSystem
    else
      throw "${function}: give `system` or `pkgs`: pure evaluation (a flake's) has no builtins.currentSystem to default to";
in
{
  squashfsTools =
    if squashfs-tools != null then
      squashfs-tools
    else if pick "squashfsTools" != null then
      pick "squashfsTools"
    else
      throw "${function}: give `squashfsTools` (a package with bin/mksquashfs, 4.5 or newer) or `pkgs`";
  # the package set's own (host platform's) squashfs package: given as an image's
  # `squashfsTools`, the image runs the build platform's (nix/make-image.nix)
  hostSquashfsTools = fromPkgs.hostSquashfsTools or null;
  portable-service-builder =
    if pick "portable-service-builder" != null then
      pick "portable-service-builder"
    else
      throw "${function}: give `portable-service-builder` (a package with bin/portable-service-builder) or `pkgs`";
  portable-service-tools = pick "portable-service-tools";
  portable-service-agent = pick "portable-service-agent";
  closureInfo = pick "closureInfo";
  system = system';
  hostSystem = if pick "hostSystem" != null then pick "hostSystem" else system';
}
