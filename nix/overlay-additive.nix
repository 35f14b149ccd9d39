# The nixpkgs overlay that adds this project's functions and packages under names of their own,
# and leaves nixpkgs' own `portableService` as it is (nix/overlay.nix replaces it):
#   pkgs.buildPortableService, pkgs.buildPortableServiceExtension,
#   pkgs.portable-service-builder, pkgs.portable-service-tools, pkgs.portable-service-agent.
# Each function has `.override` on the packages it runs, as a callPackage'd function of nixpkgs
# has: (pkgs.buildPortableService.override { squashfsTools = ...; }) { pname = ...; ... }.
final: prev:

{
  portable-service-builder = final.callPackage ./builder.nix { };
  portable-service-tools = final.callPackage ./tools.nix { };
  # static, for hosts without Nix (nixpkgs' pkgsStatic: musl)
  portable-service-agent = (final.pkgsStatic or final).callPackage ./agent.nix { };

  # the packages and systems come from this package set (nix/nixpkgs-tools.nix): the build
  # platform's mksquashfs, builder and tools, the host platform's agent
  buildPortableService = final.lib.makeOverridable (import ./portable-service.nix) { pkgs = final; };
  buildPortableServiceExtension = final.lib.makeOverridable (import ./portable-service-extension.nix) {
    pkgs = final;
  };
}
