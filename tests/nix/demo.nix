# The demo image the tests build and attach: a service keeping state across restarts, a socket
# whose connections start instances of a template unit, and /bin/sh as a symlink into the
# closure, all run by busybox from the store. `socket = false` leaves the socket out: systemd
# 239 attaches services only.
t:
{
  version ? "1.0",
  description ? "Demo service: it's \"quoted\", costs $5 and has a back\\slash",
  socket ? true,
  extra ? { },
}:

let
  inherit (t) busybox writeText;
  bb = "${busybox}/bin/busybox";
in
t.portableService (
  {
    pname = "demo";
    inherit version description;
    homepage = "https://example.org/demo";
    units = [
      # Long-running; counts its starts in its state directory.
      (writeText "demo.service" ''
        [Unit]
        Description=Demo service ${version}

        [Service]
        StateDirectory=demo
        ExecStart=/bin/sh -c 'n=$$(( $$(${bb} cat /var/lib/demo/count 2>/dev/null || echo 0) + 1 )); echo $$n > /var/lib/demo/count; echo "demo ${version} started, run $$n"; exec ${bb} sleep 2147483647'
      '')
    ]
    ++ (
      if socket then
        [
          # Each connection starts demo@<n>.service with the connection as fd 3.
          (writeText "demo.socket" ''
            [Socket]
            ListenStream=/run/demo.sock
            Accept=yes
          '')
        ]
      else
        [ ]
    )
    ++ [
      {
        name = "demo@.service";
        file = writeText "demo-at.service" ''
          [Unit]
          Description=Demo instance %i

          [Service]
          ExecStart=/bin/sh -c 'if [ -n "$$LISTEN_FDS" ]; then echo "hello from demo ${version}" >&3; else echo "demo@%i ${version} started"; exec ${bb} sleep 2147483647; fi'
        '';
      }
    ];
    symlinks = [
      {
        object = "${busybox}/bin/sh";
        symlink = "/bin/sh";
      }
    ];
    contents = [ busybox ];
  }
  // extra
)
