# What the image functions need to know of store paths, with `builtins` only: whether a value is
# one (or a derivation), its name, the store path a path inside the store belongs to, and how a
# local file becomes one.
let
  inherit (builtins)
    head
    isAttrs
    isPath
    isString
    match
    stringLength
    substring
    ;
in
rec {
  isDerivation = v: isAttrs v && v.type or null == "derivation";
  storePrefix = builtins.storeDir + "/";
  isStorePathString =
    v: isString v && substring 0 (stringLength storePrefix) v == storePrefix && builtins.hasContext v;
  # The name of /nix/store/<hash>-<name>: what follows the 32-character hash and its `-`.
  storeName = p: substring 33 (-1) (baseNameOf p);
  # The store path a path inside the store belongs to; `substring` keeps the string's context.
  storePathOf =
    s:
    let
      base = head (match "([^/]*).*" (substring (stringLength storePrefix) (-1) s));
    in
    substring 0 (stringLength storePrefix + stringLength base) s;
  # A path is copied to the store under a name a store path can hold (`demo@.service` can't).
  toStore =
    f:
    if isPath f then
      "${builtins.path {
        path = f;
        name = builtins.replaceStrings [ "@" ] [ "-at-" ] (baseNameOf f);
      }}"
    else
      "${f}";
}
