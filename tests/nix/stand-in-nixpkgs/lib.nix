# The few nixpkgs `lib` functions the flake and nix/package.nix use, for the stand-in nixpkgs.
{
  genAttrs =
    names: f:
    builtins.listToAttrs (
      map (name: {
        inherit name;
        value = f name;
      }) names
    );
  importTOML = file: builtins.fromTOML (builtins.readFile file);
  fileset = {
    unions = files: files;
    toSource = { root, fileset }: root;
  };
  licenses.mit = "mit";
  platforms.linux = [ ];
}
