# The nixpkgs overlay that adds this project's functions and packages under names of their own,
# and leaves nixpkgs' own `portableService` as it is (nix/overlay.nix replaces it):
#   pkgs.buildPortableService, pkgs.buildPortableServiceExtension,
#   pkgs.portable-service-builder, pkgs.portable-service-tools, pkgs.portable-service-agent.
# Each function has `.override` on the packages it runs, as a callPackage'd function of nixpkgs
# has: (pkgs.buildPortableService.override { squashfsTools = ...; }) { pname = ...; ... }.
final: prev:

let
  # What `nix build .#<package>.tests` builds to test each package as its users use it: the
  # manual's hello image (made by the builder), its check (run by the tools) and the hosts' side
  # of its feed (which installs the agent).
  helloImage =
    (import ./examples.nix {
      portableService = final.buildPortableService;
      inherit (final) writeText hello cacert;
    }).hello;
in
{
  portable-service-builder = final.callPackage ./builder.nix {
    passthruTests = {
      hello = helloImage;
      # whose check phase runs this crate's tests
      inherit (final) portable-service-tools;
    };
  };
  portable-service-tools = final.callPackage ./tools.nix {
    passthruTests.hello-check = helloImage.check;
  };
  # static, for hosts without Nix (nixpkgs' pkgsStatic: musl)
  portable-service-agent = (final.pkgsStatic or final).callPackage ./agent.nix {
    passthruTests.hello-sysupdate = helloImage.sysupdate {
      url = "https://updates.example.org/hello";
    };
  };

  # the packages and systems come from this package set (nix/nixpkgs-tools.nix): the build
  # platform's mksquashfs, builder and tools, the host platform's agent
  buildPortableService = final.lib.makeOverridable (import ./portable-service.nix) { pkgs = final; };
  buildPortableServiceExtension = final.lib.makeOverridable (import ./portable-service-extension.nix) {
    pkgs = final;
  };
}
