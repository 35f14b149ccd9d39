# The stand-in nixpkgs' rustPlatform.buildRustPackage, run by busybox sh in Nix's sandbox: the
# phases nixpkgs' cargo hooks run, in their order and with their cargo flags (cargoSetupHook,
# cargoBuildHook, cargoCheckHook, cargoInstallHook), so that our packages compile and their
# tests run here as they will for users: as the build user, offline, HOME=/homeless-shelter.
set -eu
export PATH="$inputsPath"

# stdenv turns a core count of 0 (use all) into the machine's
if [ "${NIX_BUILD_CORES:-0}" -le 0 ]; then NIX_BUILD_CORES=$(nproc); fi

# unpackPhase, patchPhase
cp -r "$src" source
chmod -R u+w source
cd source
eval "$postPatch"

# cargoSetupHook: the crates come from the vendored directory, never the network; a copy of it
# in the build directory, so that the paths compiled into the programs (panic locations) are
# not the store's and the package doesn't keep the crates as a runtime dependency
cp -r "$vendor" "$NIX_BUILD_TOP/cargo-vendor-dir"
vendor="$NIX_BUILD_TOP/cargo-vendor-dir"
export CARGO_HOME="$NIX_BUILD_TOP/.cargo"
mkdir -p "$CARGO_HOME"
cat >"$CARGO_HOME/config.toml" <<EOF
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "$vendor"
EOF
# the crates' C code (xz, zstd) is compiled by the cc crate, which asks for `cc`; the host's gcc,
# copied out of /usr/bin, is told where its cc1 and linker plugin are
export CC=cc
GCC_EXEC_PREFIX="$(cat "$ccHost/nix-support/gcc-exec-prefix")/"
export GCC_EXEC_PREFIX

# cargoBuildHook, unless the package sets its own buildPhase (as stdenv runs it)
if [ -n "$buildPhase" ]; then
  eval "$buildPhase"
else
  # shellcheck disable=SC2086
  cargo build -j "$NIX_BUILD_CORES" --target "$rustTarget" --offline --profile release $cargoBuildFlags
fi

# cargoCheckHook: the profile of buildRustPackage's checkType ("debug" is cargo's dev profile)
if [ -n "$doCheck" ]; then
  export PATH="$PATH:$checkInputsPath"
  profile=
  if [ "$checkType" != debug ]; then profile="--profile $checkType"; fi
  # shellcheck disable=SC2086
  cargo test -j "$NIX_BUILD_CORES" --target "$rustTarget" --offline $profile \
    $cargoTestFlags -- --test-threads="$NIX_BUILD_CORES" $checkFlags
fi

# cargoInstallHook: the programs cargo built, unless the package sets its own installPhase
if [ -n "$installPhase" ]; then
  eval "$installPhase"
else
  mkdir -p "$out/bin"
  for f in "target/$rustTarget/release"/*; do
    if [ -f "$f" ] && [ -x "$f" ]; then cp "$f" "$out/bin/"; fi
  done
fi
