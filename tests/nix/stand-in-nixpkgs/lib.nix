# The few nixpkgs `lib` functions the flake, nix/builder.nix and nix/tools.nix use, for the stand-in nixpkgs.
{
  genAttrs =
    names: f:
    builtins.listToAttrs (
      map (name: {
        inherit name;
        value = f name;
      }) names
    );
  # nixpkgs' makeOverridable, for the results the overlay gives it: a function (made a functor
  # with its arguments kept) or an attribute set, each with `override` re-calling f
  makeOverridable =
    f: args:
    let
      result = f args;
      override =
        changes:
        (import ./lib.nix).makeOverridable f (
          args // (if builtins.isFunction changes then changes args else changes)
        );
    in
    if builtins.isFunction result then
      {
        __functor = _: result;
        __functionArgs = builtins.functionArgs result;
        inherit override;
      }
    else if builtins.isAttrs result then
      result // { inherit override; }
    else
      result;
  importTOML = file: builtins.fromTOML (builtins.readFile file);
  optionalAttrs = cond: attrs: if cond then attrs else { };
  optionalString = cond: string: if cond then string else "";
  # lib.fileset for a union of files and directories: the source holds those and the
  # directories leading to them, nothing else
  fileset = {
    unions = files: files;
    toSource =
      { root, fileset }:
      let
        wanted = map toString (if builtins.isList fileset then fileset else [ fileset ]);
        startsWith = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
      in
      builtins.path {
        name = "source";
        path = root;
        filter =
          path: type:
          builtins.any (
            w: path == w || startsWith "${w}/" path || (type == "directory" && startsWith "${path}/" w)
          ) wanted;
      };
  };
  licenses.mit = "mit";
  platforms.linux = [ ];
}
