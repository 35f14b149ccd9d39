# Makes the fixture crates/portable-service-builder/tests/fixtures/nix-2.8.attrs.json: the attrs
# file Nix writes for a demo image, copied out by a busybox builder in place of ours.
#   nix build -f tests/nix/capture-attrs.nix --no-link --json   (then copy <out> to the fixture)
let
  t = import ./offline.nix { };
  image = import ./demo.nix t { };
in
derivation (
  image.drvAttrs
  // {
    builder = "${t.busybox}/bin/sh";
    args = [
      "-c"
      ''
        out=$(${t.busybox}/bin/busybox sed -n 's/.*"out": *"\([^"]*\)".*/\1/p' .attrs.json | ${t.busybox}/bin/busybox head -n 1)
        ${t.busybox}/bin/busybox cp .attrs.json "$out"
      ''
    ];
  }
)
