# Extensions of the demo image (tests/nix/demo.nix) that the tests build and attach:
#   app:  a system extension whose app.service runs a program of the extension's own store path,
#         a script run by the base's busybox (a store path the extension leaves to the base);
#   conf: a configuration extension carrying democonf.service and the file it reads,
#         /etc/democonf/greeting.
t: demo:

let
  inherit (t) busybox writeText;
  bb = "${busybox}/bin/busybox";
  base = demo { };
in
{
  inherit base;

  app =
    {
      version ? "1.0",
      extra ? { },
    }:
    let
      program = t.runBusyboxWith "app-${version}" { } ''
        busybox mkdir -p $out/bin $out/share
        echo "app ${version}" > $out/share/greeting
        printf '#!${busybox}/bin/sh\necho "$(${bb} cat %s/share/greeting) runs with $(${bb} | ${bb} head -n 1)"\n' $out > $out/bin/app
        busybox chmod 555 $out/bin/app
      '';
    in
    t.portableServiceExtension (
      {
        pname = "app";
        inherit version base;
        description = "App ${version}, an extension of demo";
        units = [
          (writeText "app.service" ''
            [Service]
            Type=oneshot
            RemainAfterExit=yes
            ExecStart=${program}/bin/app
          '')
        ];
        contents = [ program ];
      }
      // extra
    );

  conf =
    {
      greeting ? "hello from the confext",
    }:
    t.portableServiceExtension {
      pname = "democonf";
      version = "1";
      kind = "confext";
      inherit base;
      units = [
        (writeText "democonf.service" ''
          [Service]
          Type=oneshot
          RemainAfterExit=yes
          ExecStart=${bb} cat /etc/democonf/greeting
        '')
      ];
      files = [
        {
          path = "/etc/democonf/greeting";
          file = writeText "greeting" "${greeting}\n";
        }
      ];
    };
}
