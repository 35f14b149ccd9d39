# The attrs file Nix writes for an image, copied out by a busybox builder in place of ours.
# Makes the fixture crates/portable-service-builder/tests/fixtures/nix-2.8.attrs.json (the demo
# image), and the benchmark's inputs (tests/bench/bench.py passes its own image):
#   nix build -f tests/nix/capture-attrs.nix --no-link --json   (then copy <out> to the fixture)
{
  image ? null,
}:

let
  t = import ./offline.nix { };
  bb = "${t.busybox}/bin/busybox";
  captured = if image == null then import ./demo.nix t { } else image;
in
derivation (
  captured.drvAttrs
  // {
    builder = "${t.busybox}/bin/sh";
    args = [
      "-c"
      ''
        out=$(${bb} sed -n 's/.*"out": *"\([^"]*\)".*/\1/p' .attrs.json | ${bb} head -n 1)
        ${bb} cp .attrs.json "$out"
      ''
    ];
  }
)
