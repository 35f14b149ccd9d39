# The nixpkgs overlay: `pkgs.portableService`, `pkgs.portableServiceExtension`,
# `pkgs.portable-service-builder` (what every image's derivation runs) and
# `pkgs.portable-service-tools` (`portable-service check`, `sign` and `publish`).
final: prev:

let
  # The image derivation runs on the build platform, so its tools come from there.
  build = final.buildPackages;
  tools = {
    # nixpkgs renamed squashfsTools to squashfs-tools in 2026; take whichever this one has.
    squashfsTools = build.squashfs-tools or build.squashfsTools;
    inherit (build) portable-service-builder portable-service-tools;
    system = final.stdenv.buildPlatform.system;
    hostSystem = final.stdenv.hostPlatform.system;
  };
in
{
  portable-service-builder = final.callPackage ./builder.nix { };
  portable-service-tools = final.callPackage ./tools.nix { };

  portableService = import ./portable-service.nix tools;
  portableServiceExtension = import ./portable-service-extension.nix tools;
}
