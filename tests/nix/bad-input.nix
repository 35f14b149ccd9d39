# One case of the inputs table (crates/portable-service-builder/tests/fixtures/inputs.json)
# as a portableService (or portableServiceExtension) call over the offline test world: the
# table's units ({ name; text; }) and files ({ path; text; }) become store files, and "@busybox"
# in symlink objects and contents becomes busybox's store path; `system` is the system the
# functions are made for.
t: case:

let
  inherit (builtins) elemAt isString match;
  ref =
    s:
    let
      m = if isString s then match "@([a-z]+)(.*)" s else null;
    in
    if m == null then s else "${t.${elemAt m 0}}${elemAt m 1}";
  unitText = "[Service]\nExecStart=/bin/true\n";
  call = {
    pname = "demo";
    version = "1";
    units = [ { name = "demo.service"; } ];
  }
  // case.args;
  extension = case.extension or null;
  # the functions as made for the case's system (a DDI's partition types name it)
  tools = {
    inherit (t) squashfsTools portable-service-builder portable-service-tools;
    system = case.system or "x86_64-linux";
  };
  function =
    if extension == null then
      import ../../nix/portable-service.nix tools
    else
      args: import ../../nix/portable-service-extension.nix tools (args // { kind = extension; });
in
function (
  call
  // {
    units = map (u: {
      inherit (u) name;
      file = t.writeText "unit" (u.text or unitText);
    }) call.units;
    symlinks = map (s: s // { object = ref s.object; }) (call.symlinks or [ ]);
    contents = map ref (call.contents or [ ]);
  }
  // (
    if extension == null then
      { }
    else
      {
        files = map (f: {
          inherit (f) path;
          file = t.writeText "file" f.text;
        }) (call.files or [ ]);
      }
  )
)
