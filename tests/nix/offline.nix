# The offline test world: no nixpkgs here, so the packages the function and the examples need are
# stand-ins brought into the store from target/offline (made by tests/setup.sh), and
# nix/portable-service.nix is called with them exactly as the overlay calls it with nixpkgs'.
{
  stage ? ../../target/offline,
}:

let
  system = builtins.currentSystem;
  bring =
    dir: name:
    if builtins.pathExists (stage + "/${dir}") then
      builtins.path {
        path = stage + "/${dir}";
        inherit name;
      }
    else
      throw "tests/nix/offline.nix: ${toString stage}/${dir} is missing; run tests/setup.sh first";

  busybox = bring "busybox" "busybox";
  # what tests/setup.sh put into the store itself (too large to hash at every evaluation)
  added =
    name:
    let
      file = stage + "/${name}.path";
    in
    if builtins.pathExists file then
      builtins.storePath (builtins.head (builtins.split "\n" (builtins.readFile file)))
    else
      throw "tests/nix/offline.nix: ${toString file} is missing; run tests/setup.sh first";
  sh = "${busybox}/bin/sh";

  # A derivation built by busybox sh with $out set and the attributes of `env` in its
  # environment; commands are `busybox <applet>`.
  runBusyboxWith =
    name: env: script:
    derivation (
      env
      // {
        inherit name system;
        builder = sh;
        args = [
          "-c"
          ''
            set -e
            export PATH=${busybox}/bin
            ${script}
          ''
        ];
      }
    );
in
rec {
  inherit busybox system runBusyboxWith;
  squashfsTools = bring "squashfs-tools" "squashfs-tools-host";
  portable-service-builder = bring "builder" "portable-service-builder";
  portable-service-tools = bring "tools" "portable-service-tools";
  portable-service-agent = bring "agent" "portable-service-agent";
  portableService = import ../../nix/portable-service.nix {
    inherit
      squashfsTools
      portable-service-builder
      portable-service-tools
      portable-service-agent
      system
      ;
  };
  portableServiceExtension = import ../../nix/portable-service-extension.nix {
    inherit
      squashfsTools
      portable-service-builder
      portable-service-tools
      portable-service-agent
      system
      ;
  };

  # Like nixpkgs' writeText: a derivation whose output is one file with that text.
  writeText =
    name: text:
    runBusyboxWith name { inherit text; } ''
      busybox printf '%s' "$text" > $out
    '';

  # Like nixpkgs' hello: bin/hello prints a greeting.
  hello =
    runBusyboxWith "hello-2.12.2" { } ''
      busybox mkdir -p $out/bin
      printf '#!${sh}\necho "Hello, world!"\n' > $out/bin/hello
      busybox chmod 555 $out/bin/hello
    ''
    // {
      version = "2.12.2";
    };

  # Like nixpkgs' cacert: etc/ssl/certs/ca-bundle.crt.
  cacert = bring "cacert" "nss-cacert";

  # What the stand-in nixpkgs builds Rust packages with (tests/nix/stand-in-nixpkgs): this
  # machine's Rust toolchain, its compiler and linker for the host alone; every crate of
  # Cargo.lock, vendored; the host's C compiler; and the programs the packages' tests run.
  rust = added "rust-toolchain";
  # its rustc's version (`rustc -V`), which the stand-in's rustPlatform says it has
  rustVersion =
    let
      file = stage + "/rustc-version";
    in
    if builtins.pathExists file then
      builtins.head (builtins.split "\n" (builtins.readFile file))
    else
      throw "tests/nix/offline.nix: ${toString file} is missing; run tests/setup.sh first";
  vendor = added "vendor";
  cc = bring "cc" "cc-host";
  coreutils = bring "coreutils" "coreutils-host";
  cryptsetup = bring "cryptsetup" "cryptsetup-host";
  # nixpkgs' openssl reads its configuration from its store path; the host's, from /etc
  openssl =
    let
      host = bring "openssl" "openssl-host";
    in
    runBusyboxWith "openssl" { } ''
      busybox mkdir -p $out/bin
      printf '#!${sh}\nOPENSSL_CONF=${host}/openssl.cnf exec ${host}/bin/openssl "$@"\n' > $out/bin/openssl
      busybox chmod 555 $out/bin/openssl
    '';
  gnupg = bring "gnupg" "gnupg-host";

  examples = import ../../nix/examples.nix {
    inherit
      portableService
      writeText
      hello
      cacert
      ;
  };
}
