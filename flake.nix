{
  description = "systemd Portable Service images from Nix, streamed into mksquashfs without copying the closure";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems =
        f:
        nixpkgs.lib.genAttrs systems (
          system:
          f (
            import nixpkgs {
              inherit system;
              overlays = [ self.overlays.default ];
            }
          )
        );
    in
    {
      # pkgs.buildPortableService, pkgs.buildPortableServiceExtension, pkgs.portable-service-builder
      # and pkgs.portable-service-tools; and pkgs.portableService and pkgs.portableServiceExtension
      # replaced by this project's functions, for everything in that nixpkgs.
      overlays.default = import ./nix/overlay.nix;
      # the same, leaving nixpkgs' own portableService as it is
      overlays.additive = import ./nix/overlay-additive.nix;

      # The function without the overlay: give it a package with bin/mksquashfs, one with
      # bin/portable-service-builder and, for `.check`, one with bin/portable-service, or a
      # nixpkgs package set as `pkgs` (then it evaluates in pure mode too; README.md).
      lib.mkPortableService = import ./nix/portable-service.nix;
      lib.mkPortableServiceExtension = import ./nix/portable-service-extension.nix;

      packages = forAllSystems (
        pkgs:
        let
          examples = import ./nix/examples.nix {
            inherit (pkgs)
              portableService
              writeText
              hello
              cacert
              ;
          };
        in
        rec {
          # `nix run` gives `portable-service` (check, sign); `--version` names this commit
          default = portable-service-tools;
          portable-service-tools = pkgs.portable-service-tools.override {
            commit = self.shortRev or self.dirtyShortRev or "unknown";
          };
          inherit (pkgs) portable-service-builder portable-service-agent;
          inherit (examples)
            hello
            hello-with-ssl
            hello-verity
            hello-ddi
            ;
        }
      );

      checks = forAllSystems (
        pkgs:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
          # the whole workspace, whose check phase runs the builder's, rules' and tools' tests
          tools = pkgs.portable-service-tools;
        in
        self.packages.${system}
        // {
          # `nix flake check` refuses an image systemd would refuse (portable-service check)
          hello-check = self.packages.${system}.hello.check;
          hello-with-ssl-check = self.packages.${system}.hello-with-ssl.check;
          hello-verity-check = self.packages.${system}.hello-verity.check;
          hello-ddi-check = self.packages.${system}.hello-ddi.check;
          clippy = tools.overrideAttrs (old: {
            pname = "portable-service-clippy";
            nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
            buildPhase = "cargo clippy --offline --all-targets -- -D warnings";
            doCheck = false;
            installPhase = "touch $out";
          });
          fmt =
            pkgs.runCommand "portable-service-fmt"
              {
                nativeBuildInputs = [
                  pkgs.cargo
                  pkgs.rustfmt
                  pkgs.nixfmt
                ];
              }
              ''
                cd ${self}
                cargo fmt --all -- --check
                nixfmt --check $(find . -name '*.nix')
                touch $out
              '';
        }
      );

      # `nix fmt` gives a formatter no paths since Nix 2.25: nixfmt-tree formats the whole tree
      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);
    };
}
