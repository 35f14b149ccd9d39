# The nixpkgs overlay that adds this project's functions and packages under names of their own,
# and leaves nixpkgs' own `portableService` as it is (nix/overlay.nix replaces it):
#   pkgs.buildPortableService, pkgs.buildPortableServiceExtension,
#   pkgs.portable-service-builder, pkgs.portable-service-tools, pkgs.portable-service-agent.
# Each function has `.override` on the packages it runs, as a callPackage'd function of nixpkgs
# has: (pkgs.buildPortableService.override { squashfsTools = ...; }) { pname = ...; ... }.
final: prev:

let
  # The image derivation runs on the build platform, so its tools come from there.
  build = final.buildPackages;
  tools = {
    # nixpkgs renamed squashfsTools to squashfs-tools in 2026; take whichever this one has.
    squashfsTools = build.squashfs-tools or build.squashfsTools;
    inherit (build) portable-service-builder portable-service-tools;
    # what `image.sysupdate` installs on the hosts: their platform's, static
    inherit (final) portable-service-agent;
    system = final.stdenv.buildPlatform.system;
    hostSystem = final.stdenv.hostPlatform.system;
  };
in
{
  portable-service-builder = final.callPackage ./builder.nix { };
  portable-service-tools = final.callPackage ./tools.nix { };
  # static, for hosts without Nix (nixpkgs' pkgsStatic: musl)
  portable-service-agent = (final.pkgsStatic or final).callPackage ./agent.nix { };

  buildPortableService = final.lib.makeOverridable (import ./portable-service.nix) tools;
  buildPortableServiceExtension = final.lib.makeOverridable (import ./portable-service-extension.nix) tools;
}
