# For users without flakes:
#   let pkgs = import <nixpkgs> { overlays = [ (import ./path/to/this/nix/overlay.nix) ]; };
# (nix/overlay-additive.nix leaves nixpkgs' own portableService as it is)
# or this file, which uses the nixpkgs pinned in flake.lock unless given `pkgs`:
#   nix-build -A hello            # the manual's first example
#   (import ./. { }).portableService { ... }
{
  pkgs ? null,
  system ? builtins.currentSystem,
}:

let
  lock = builtins.fromJSON (builtins.readFile ./flake.lock);
  pin = lock.nodes.nixpkgs.locked;
  nixpkgs = builtins.fetchTarball {
    url = "https://github.com/${pin.owner}/${pin.repo}/archive/${pin.rev}.tar.gz";
    sha256 = pin.narHash;
  };
  overlay = import ./nix/overlay.nix;
  pkgs' =
    if pkgs == null then
      import nixpkgs {
        inherit system;
        overlays = [ overlay ];
      }
    else
      pkgs.extend overlay;
  examples = import ./nix/examples.nix {
    inherit (pkgs')
      portableService
      writeText
      hello
      cacert
      ;
  };
in
{
  inherit overlay;
  overlayAdditive = import ./nix/overlay-additive.nix;
  inherit (pkgs')
    portableService
    portableServiceExtension
    buildPortableService
    buildPortableServiceExtension
    portable-service-builder
    portable-service-tools
    portable-service-agent
    ;
  inherit (examples)
    hello
    hello-with-ssl
    hello-verity
    hello-ddi
    ;
}
