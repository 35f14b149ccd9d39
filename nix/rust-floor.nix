# The oldest Rust a package's crates build with (their `rust-version`), held against the Rust of
# the nixpkgs that builds them: an older nixpkgs (nixos-25.05 has Rust 1.86) fails here, at
# evaluation, naming both, rather than in cargo deep in the build.
# `rustPlatform`: the package's; `pname`: the name the error starts with; `manifest`: the
# Cargo.toml whose rust-version (a package's, or a workspace's) the crates need.
{
  rustPlatform,
  pname,
  manifest,
}:

let
  toml = builtins.fromTOML (builtins.readFile manifest);
  needs = toml.package.rust-version or toml.workspace.package.rust-version;
  # what nixpkgs' makeRustPlatform keeps of its toolchain; a toolchain without a version
  # can't be held to the floor, and is left to cargo's own check
  has = rustPlatform.rust.rustc.version or null;
in
if has != null && builtins.compareVersions has needs < 0 then
  throw "${pname}: needs Rust ${needs} or newer (rust-version in Cargo.toml), but this nixpkgs builds with Rust ${has}: use nixos-25.11 or newer (README: Using it)"
else
  true
