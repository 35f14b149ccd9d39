# The nixpkgs overlay. It adds `pkgs.buildPortableService` and `pkgs.buildPortableServiceExtension`
# (this project's functions), `pkgs.portable-service-builder` (what every image's derivation
# runs) and `pkgs.portable-service-tools` (`portable-service check`, `sign` and `publish`), and
# makes `pkgs.portableService` and `pkgs.portableServiceExtension` the same functions: so that
# the nixpkgs function is replaced for everything in that package set, which is then held to
# this one's checks. nix/overlay-additive.nix adds the same and leaves nixpkgs' `portableService`
# as it is.
final: prev:

let
  added = import ./overlay-additive.nix final prev;
in
added
// {
  portableService = added.buildPortableService;
  portableServiceExtension = added.buildPortableServiceExtension;
}
