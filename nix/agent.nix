# portable-service-agent: what runs on each host, as root, from an image's update, rollback and
# recover units (crates/portable-service-agent). It is copied to hosts that have no Nix store, so
# it is built for the image's host platform from nixpkgs' static package set (the overlay calls
# this file with pkgsStatic's callPackage: musl, no runtime dependency). Its check phase runs
# the agent's tests: the simulator that breaks every step of its scenarios, the feed over
# loopback HTTP and signatures that gpg makes (throwaway keys).
{
  lib,
  rustPlatform,
  gnupg,
  # what `passthru.tests` holds (the overlay gives the hosts' side of an image's feed)
  passthruTests ? { },
}:

assert import ./rust-floor.nix {
  inherit rustPlatform;
  pname = "portable-service-agent";
  manifest = ../Cargo.toml;
};
rustPlatform.buildRustPackage {
  pname = "portable-service-agent";
  version = (lib.importTOML ../crates/portable-service-agent/Cargo.toml).package.version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../crates/portable-service-rules
      ../crates/portable-service-agent
      # the rest of the workspace's members, as cargo reads every member's manifest
      ../crates/portable-service-builder/Cargo.toml
      ../crates/portable-service-builder/src
      ../crates/portable-service-tools/Cargo.toml
      ../crates/portable-service-tools/src
      ../tests/Cargo.toml
      ../tests/src
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [
    "-p"
    "portable-service-agent"
  ];
  # The tests in the release profile, so that they reuse the crates the build compiled (zbus,
  # rPGP, rustls: compiling them again in the dev profile took minutes), and without LTO, which
  # would be done again for every test program; the agent's work is waiting on the network,
  # portabled and its units, not computing.
  env.CARGO_PROFILE_RELEASE_LTO = "false";
  checkType = "release";
  cargoTestFlags = [
    "-p"
    "portable-service-agent"
  ];
  nativeCheckInputs = [ gnupg ];
  passthru.tests = passthruTests;

  meta = {
    description = "Updates a host's Portable Service images from a signed feed, keeps a version only once it proved healthy, and heals after any cut";
    license = lib.licenses.mit;
    mainProgram = "portable-service-agent";
    platforms = lib.platforms.linux;
  };
}
