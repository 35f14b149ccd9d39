# The nixpkgs overlay: `pkgs.portableService`, `pkgs.portableServiceExtension` and
# `pkgs.portable-service-builder`.
final: prev:

let
  # The image derivation runs on the build platform, so its tools come from there.
  build = final.buildPackages;
  tools = {
    # nixpkgs renamed squashfsTools to squashfs-tools in 2026; take whichever this one has.
    squashfsTools = build.squashfs-tools or build.squashfsTools;
    inherit (build) portable-service-builder;
    system = final.stdenv.buildPlatform.system;
  };
in
{
  portable-service-builder = final.callPackage ./package.nix { };

  portableService = import ./portable-service.nix tools;
  portableServiceExtension = import ./portable-service-extension.nix tools;
}
