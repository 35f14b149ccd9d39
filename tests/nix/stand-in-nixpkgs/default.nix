# A stand-in for `import nixpkgs { system; overlays; }`: a package set with what the overlay,
# nix/builder.nix, nix/tools.nix and nix/examples.nix use, applied overlays and all. Its packages are the
# offline ones of tests/nix/offline.nix. `rustPlatform.buildRustPackage` copies the staged static
# build of the package's program rather than compiling (nothing here can fetch nixpkgs' Rust
# toolchain), but as a derivation over the same `src`, lock and `postPatch` that nixpkgs' would
# compile: so its store path, and every image's derivation, changes exactly when nixpkgs' would.
# Needs PORTABLE_SERVICE_REPO (the repository's absolute path) and --impure.
{
  system ? builtins.currentSystem,
  overlays ? [ ],
  ...
}:

let
  repo = builtins.getEnv "PORTABLE_SERVICE_REPO";
  t =
    if repo == "" then
      throw "stand-in nixpkgs: set PORTABLE_SERVICE_REPO to the repository's path (and use --impure)"
    else
      import (/. + repo + "/tests/nix/offline.nix") { stage = /. + repo + "/target/offline"; };

  base = final: {
    lib = import ./lib.nix;
    callPackage =
      fn: args:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) final // args);
    rustPlatform.buildRustPackage =
      attrs:
      let
        staged = t.${attrs.pname};
      in
      derivation {
        name = "${attrs.pname}-${attrs.version}";
        inherit system;
        builder = "${t.busybox}/bin/sh";
        args = [
          "-c"
          "${t.busybox}/bin/busybox mkdir -p $out/bin && ${t.busybox}/bin/busybox cp ${staged}/bin/${attrs.meta.mainProgram} $out/bin/"
        ];
        inherit (attrs) src;
        cargoLock = attrs.cargoLock.lockFile;
        postPatch = attrs.postPatch or "";
      }
      // {
        inherit (attrs) pname version meta;
      };
    # only check inputs of nix/tools.nix, which the stand-in buildRustPackage doesn't build
    cryptsetup = null;
    openssl = null;
    gnupg = null;
    inherit (t)
      squashfsTools
      hello
      cacert
      writeText
      ;
    buildPackages = final;
    stdenv.buildPlatform.system = system;
    stdenv.hostPlatform.system = system;
    extend = overlay: packageSet (overlays ++ [ overlay ]);
  };

  packageSet =
    overlays:
    let
      final = builtins.foldl' (prev: overlay: prev // overlay final prev) (base final) overlays;
    in
    final;
in
packageSet overlays
