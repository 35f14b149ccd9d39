# portable-service-builder, the builder of every image's derivation, built with nixpkgs' Rust
# tooling from its own crates and nothing else: the source is crates/portable-service-builder and
# crates/portable-service-rules (their Cargo.toml and src/), the workspace manifest and lock are
# nix/builder-workspace.nix's. A change of the tools, the tests, the docs or a dependency only
# they use leaves this package, and every image built with it, as it was.
#
# Its tests need the whole workspace (they run mksquashfs and compare against the tools' view
# of the image), so they run in portable-service-tools' check phase (nix/tools.nix), not here.
{
  lib,
  rustPlatform,
  # what `passthru.tests` holds (the overlay gives an image built with this builder)
  passthruTests ? { },
}:

let
  workspace = import ./builder-workspace.nix;
  floor = import ./rust-floor.nix {
    inherit rustPlatform;
    pname = "portable-service-builder";
    manifest = ../crates/portable-service-builder/Cargo.toml;
  };
in
assert floor;
rustPlatform.buildRustPackage {
  pname = "portable-service-builder";
  version = (lib.importTOML ../crates/portable-service-builder/Cargo.toml).package.version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions (
      builtins.concatMap (member: [
        (../. + "/${member}/Cargo.toml")
        (../. + "/${member}/src")
      ]) workspace.members
    );
  };
  cargoLock.lockFile = workspace.lock;
  # the workspace of these two crates, in place of the repository's
  postPatch = ''
    cp ${workspace.manifest} Cargo.toml
    cp ${workspace.lock} Cargo.lock
  '';

  cargoBuildFlags = [
    "-p"
    "portable-service-builder"
  ];
  doCheck = false;
  passthru.tests = passthruTests;

  meta = {
    description = "Nix builder that writes systemd Portable Service images without staging the closure";
    license = lib.licenses.mit;
    mainProgram = "portable-service-builder";
    platforms = lib.platforms.linux;
  };
}
