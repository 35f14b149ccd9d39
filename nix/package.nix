# portable-service-builder built with nixpkgs' Rust tooling from Cargo.lock. Its tests run
# the real mksquashfs and unsquashfs, compare the dm-verity hash tree with veritysetup's and the
# root hash signature with openssl's (throwaway keys it makes), hence squashfsTools, cryptsetup
# and openssl in the check inputs.
{
  lib,
  rustPlatform,
  squashfsTools,
  cryptsetup,
  openssl,
}:

rustPlatform.buildRustPackage {
  pname = "portable-service-builder";
  version = (lib.importTOML ../crates/portable-service-builder/Cargo.toml).package.version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../crates
      ../tests/Cargo.toml
      ../tests/src
      ../tests/tests
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  cargoBuildFlags = [
    "-p"
    "portable-service-builder"
  ];
  cargoTestFlags = [
    "-p"
    "portable-service-builder"
  ];
  # Kept for the project's own CI: the 9 GiB sparse-file test (it reads 9 GiB through a pipe)
  # and the tests that need root (a tmpfs mount, dropping root's capabilities).
  checkFlags = [
    "--skip"
    "a_file_of_several_gib_comes_out_whole"
    "--skip"
    "a_full_disk_fails_the_build_and_leaves_nothing"
    "--skip"
    "a_store_file_that_cannot_be_read_is_named"
  ];
  nativeCheckInputs = [
    squashfsTools
    cryptsetup
    openssl
  ];

  meta = {
    description = "Nix builder that writes systemd Portable Service images without staging the closure";
    license = lib.licenses.mit;
    mainProgram = "portable-service-builder";
    platforms = lib.platforms.linux;
  };
}
