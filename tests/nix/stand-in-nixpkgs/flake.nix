# A stand-in for the nixpkgs flake input, so that this repository's flake can be evaluated and
# its examples built offline:
#   PORTABLE_SERVICE_REPO=$PWD nix build .#hello --impure --no-write-lock-file \
#     --override-input nixpkgs path:$PWD/tests/nix/stand-in-nixpkgs
{
  outputs =
    { self }:
    {
      lib = import ./lib.nix;
    };
}
