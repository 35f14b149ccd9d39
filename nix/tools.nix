# portable-service-tools: the `portable-service` program (check, sign, publish, transfers), built
# with nixpkgs' Rust tooling from the whole workspace. Its check phase runs the tests of the
# builder, the rules and the tools: they run the real mksquashfs and unsquashfs, compare the
# dm-verity hash tree with veritysetup's and the root hash signature with openssl's, and sign and
# verify feeds with gpg (throwaway keys they make), hence squashfs-tools, cryptsetup, openssl and
# gnupg in the check inputs. `publish` runs this package's gnupg (PORTABLE_SERVICE_GNUPG_BIN,
# read at compile time); the hosts verify with their own. `commit`, when given (the flake's
# packages give its revision), is what `portable-service --version` names after the version
# (PORTABLE_SERVICE_COMMIT, read at compile time: no git in the sandbox). It is left out of the
# overlay's package, which images' `.check` use, so that a new commit rebuilds no check.
{
  lib,
  stdenv,
  rustPlatform,
  # nixpkgs' name since 2026-02; nixos-25.11 has only `squashfsTools`, which newer nixpkgs keeps
  # as an alias (gone with `allowAliases = false`)
  squashfs-tools ? null,
  squashfsTools ? null,
  cryptsetup,
  openssl,
  gnupg,
  commit ? null,
  # what `passthru.tests` holds (the overlay gives an image's check, which runs these tools)
  passthruTests ? { },
}:

let
  squashfs =
    if squashfs-tools != null then
      squashfs-tools
    else if squashfsTools != null then
      squashfsTools
    else
      throw "portable-service-tools: this nixpkgs has neither `squashfs-tools` nor `squashfsTools`, whose mksquashfs the tests run";
in
assert import ./rust-floor.nix {
  inherit rustPlatform;
  pname = "portable-service-tools";
  manifest = ../Cargo.toml;
};
rustPlatform.buildRustPackage {
  pname = "portable-service-tools";
  version = (lib.importTOML ../crates/portable-service-tools/Cargo.toml).package.version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../crates/portable-service-rules
      ../crates/portable-service-builder
      # the tools without their fuzz/ (its own workspace, and its build directory is large)
      ../crates/portable-service-tools/Cargo.toml
      ../crates/portable-service-tools/src
      ../crates/portable-service-tools/tests
      ../tests/Cargo.toml
      ../tests/src
      ../tests/tests
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;
  env = {
    PORTABLE_SERVICE_GNUPG_BIN = "${gnupg}/bin";
  }
  // lib.optionalAttrs (commit != null) { PORTABLE_SERVICE_COMMIT = commit; };

  cargoBuildFlags = [
    "-p"
    "portable-service-tools"
  ];
  # The tests in cargo's dev profile: with overflow checks and debug assertions, which is what
  # the readers of hostile files are tested for, and without thin LTO over every test program,
  # which took most of the check phase's time (cargo's dev profile, as `cargo test` runs them).
  checkType = "debug";
  cargoTestFlags = [
    "-p"
    "portable-service-rules"
    "-p"
    "portable-service-builder"
    "-p"
    "portable-service-tools"
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
    # bash's `complete` is interactive bash's, which the sandbox hasn't; and the stand-in
    # sandbox's sh (busybox) runs its own cp, without GNU's --no-preserve
    "--skip"
    "bash_loads_the_completions"
    "--skip"
    "the_copy_a_store_refusal_names_signs"
    # these run check under `prlimit --as` (util-linux), which the sandbox hasn't
    "--skip"
    "a_directory_deeper_than_1024_levels_is_refused_and_one_of_1000_is_read"
    "--skip"
    "long_paths_named_by_thousands_of_links_are_refused_within_64_mib"
    "--skip"
    "hard_links_to_a_large_sparse_file_are_refused_before_backhand_copies_its_blocks"
  ];
  # Completions and man pages, made from the command line's own definition by the program
  # (clap_complete, clap_mangen), where shells and man look for them; a cross build can't run
  # the program it made, and goes without them.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    $out/bin/portable-service generate $out
  '';

  nativeCheckInputs = [
    squashfs
    cryptsetup
    openssl
    gnupg
  ];
  passthru.tests = passthruTests;

  meta = {
    description = "Check what systemd will do with a Portable Service image, sign its root hash, publish it for systemd-sysupdate";
    license = lib.licenses.mit;
    mainProgram = "portable-service";
    platforms = lib.platforms.linux;
  };
}
