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
  portableService = import ../../nix/portable-service.nix {
    inherit
      squashfsTools
      portable-service-builder
      portable-service-tools
      system
      ;
  };
  portableServiceExtension = import ../../nix/portable-service-extension.nix {
    inherit
      squashfsTools
      portable-service-builder
      portable-service-tools
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

  examples = import ../../nix/examples.nix {
    inherit
      portableService
      writeText
      hello
      cacert
      ;
  };
}
