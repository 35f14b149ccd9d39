# The builder's own Cargo workspace: its crate and portable-service-rules, with a lock that holds
# the entries they need and nothing else (nix/builder.Cargo.lock, which cargo cut from Cargo.lock:
# tests/update-builder-lock.sh). nix/builder.nix builds from these two files and the two crates'
# sources alone, so that an image's derivation changes only when the builder's code or its lock
# entries do, never for a change of the tools, the tests or a dependency only they use.
#
# Only `builtins` is used: tests/update-builder-lock.sh and tests/tests/flake.rs read it.
let
  members = [
    "crates/portable-service-builder"
    "crates/portable-service-rules"
  ];
in
{
  inherit members;
  # what the root Cargo.toml says, for these two crates
  manifest = builtins.toFile "Cargo.toml" ''
    [workspace]
    resolver = "2"
    members = [${builtins.concatStringsSep ", " (map (m: ''"${m}"'') members)}]

    [profile.release]
    lto = "thin"
    codegen-units = 1
  '';
  lock = ./builder.Cargo.lock;
}
