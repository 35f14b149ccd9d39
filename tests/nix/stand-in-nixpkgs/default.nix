# A stand-in for `import nixpkgs { system; overlays; }`: a package set with what the overlay,
# nix/builder.nix, nix/tools.nix and nix/examples.nix use, applied overlays and all. Its packages are the
# offline ones of tests/nix/offline.nix. `rustPlatform.buildRustPackage` compiles the package
# from its `src` and lock with this machine's Rust toolchain and runs its tests in Nix's sandbox
# (build-rust-package.sh), as nixpkgs' does with its own toolchain; its store path, and every
# image's derivation, changes exactly when nixpkgs' would.
# Packages are offered by today's names only, as a nixpkgs with `allowAliases = false` offers
# them. `crossSystem` makes a cross package set, as nixpkgs' does: its buildPackages is the
# native one, and its own packages, for the host platform, are named with the host's triple.
# `rustcVersion`: the Rust its rustPlatform says it has (an older one, to test the floor).
# Needs PORTABLE_SERVICE_REPO (the repository's absolute path) and --impure.
{
  system ? builtins.currentSystem,
  crossSystem ? null,
  overlays ? [ ],
  rustcVersion ? null,
  ...
}@args:

let
  repo = builtins.getEnv "PORTABLE_SERVICE_REPO";
  t =
    if repo == "" then
      throw "stand-in nixpkgs: set PORTABLE_SERVICE_REPO to the repository's path (and use --impure)"
    else
      import (/. + repo + "/tests/nix/offline.nix") { stage = /. + repo + "/target/offline"; };

  hostSystem = if crossSystem == null then system else crossSystem;
  # nixpkgs names a package built for another platform after that platform's triple
  triple = s: "${builtins.head (builtins.split "-linux" s)}-unknown-linux-gnu";
  hostSuffix = if hostSystem == system then "" else "-${triple hostSystem}";
  # the host platform's build of a stand-in package: in a native set the package itself
  forHost =
    name: p:
    if hostSuffix == "" then
      p
    else
      t.runBusyboxWith "${name}${hostSuffix}" { } "busybox cp -r ${p} $out"
      // {
        stdenv.hostPlatform.system = hostSystem;
      }
      // (if p ? version then { inherit (p) version; } else { });

  binPath = inputs: builtins.concatStringsSep ":" (map (p: "${p}/bin") inputs);

  # Compiles the package with this machine's Rust toolchain and runs its tests, in Nix's
  # sandbox, as nixpkgs' buildRustPackage does (build-rust-package.sh). `overrideAttrs` and the
  # phases it may set (`buildPhase`, `installPhase`) as stdenv has them, for the flake's clippy
  # check.
  buildRustPackage =
    attrs:
    derivation (
      attrs.env or { }
      // {
        name = "${attrs.pname}-${attrs.version}${hostSuffix}";
        inherit system;
        builder = "${t.busybox}/bin/sh";
        args = [ ./build-rust-package.sh ];
        inherit (attrs) src;
        inherit (t) vendor;
        ccHost = t.cc;
        # nixpkgs vendors the crates of this lock; the stand-in's directory holds all of them
        cargoLock = attrs.cargoLock.lockFile;
        postPatch = attrs.postPatch or "";
        buildPhase = attrs.buildPhase or "";
        installPhase = attrs.installPhase or "";
        cargoBuildFlags = attrs.cargoBuildFlags or [ ];
        cargoTestFlags = attrs.cargoTestFlags or [ ];
        checkFlags = attrs.checkFlags or [ ];
        doCheck = attrs.doCheck or true;
        checkType = attrs.checkType or "release";
        rustTarget = triple hostSystem;
        inputsPath = binPath (
          [
            t.rust
            t.cc
            t.coreutils
            t.busybox
          ]
          ++ attrs.nativeBuildInputs or [ ]
        );
        checkInputsPath = binPath (attrs.nativeCheckInputs or [ ]);
      }
    )
    # as stdenv puts them: passthru's attributes on the package, and `passthru` itself
    // attrs.passthru or { }
    // {
      inherit (attrs) pname version meta;
      passthru = attrs.passthru or { };
      overrideAttrs =
        f:
        let
          old = attrs // {
            nativeBuildInputs = attrs.nativeBuildInputs or [ ];
          };
        in
        buildRustPackage (old // f old);
    };

  # What the flake's checks and formatter name but nothing here can build: evaluating them is
  # what `nix flake check --no-build` does; building one says why it can't.
  missing =
    name:
    t.runBusyboxWith name { } ''
      echo "${name}: not in the offline stand-in for nixpkgs" >&2
      exit 1
    '';

  base = final: {
    lib = import ./lib.nix;
    callPackage =
      fn: args:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      # overridable, as nixpkgs' callPackage makes what it calls (the flake overrides the
      # tools package's `commit`)
      final.lib.makeOverridable f (
        builtins.intersectAttrs (builtins.functionArgs f) final // args
      );
    rustPlatform = {
      inherit buildRustPackage;
      # what nixpkgs' makeRustPlatform keeps of its toolchain
      rust.rustc.version = if rustcVersion == null then t.rustVersion else rustcVersion;
    };
    # nixpkgs' closureInfo, as much of it as an evaluation sees
    closureInfo =
      { rootPaths }:
      t.runBusyboxWith "closure-info" { inherit rootPaths; } ''
        echo "closureInfo: not in the offline stand-in for nixpkgs" >&2
        exit 1
      '';
    runCommand =
      name: env: script:
      t.runBusyboxWith name (builtins.removeAttrs env [ "nativeBuildInputs" ]) ''
        export PATH=${binPath (env.nativeBuildInputs or [ ])}:$PATH
        ${script}
      '';
    # cargo, rustc, clippy and rustfmt are one toolchain here
    cargo = t.rust;
    clippy = t.rust;
    rustfmt = t.rust;
    nixfmt = missing "nixfmt";
    nixfmt-tree = missing "nixfmt-tree";
    inherit (t)
      cryptsetup
      openssl
      gnupg
      cacert
      writeText
      ;
    # nixpkgs' name since 2026-02; `squashfsTools` is an alias there, absent here
    squashfs-tools = forHost "squashfs-tools" t.squashfsTools;
    hello = forHost "hello-2.12.2" t.hello;
    # nixpkgs' own function, as much of it as tells it apart from the overlay's
    portableService = args: { nixpkgsPortableService = args.pname; };
    buildPackages =
      if crossSystem == null then
        final
      else
        import ./. (
          args
          // {
            crossSystem = null;
          }
        );
    stdenv.buildPlatform = {
      inherit system;
      # as nixpkgs' platforms say it (no emulator here)
      canExecute = platform: platform.system == system;
    };
    stdenv.hostPlatform.system = hostSystem;
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
