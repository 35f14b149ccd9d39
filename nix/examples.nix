# The two examples of the nixpkgs manual's portableService page, written the way the manual writes
# them, so that they can be copied into a user's own code, and the first one again with a dm-verity
# hash tree (README: Integrity). The flake builds them with nixpkgs' `hello` and `cacert`; the
# offline tests build them with stand-ins (tests/nix/offline.nix).
{
  portableService,
  writeText,
  hello,
  cacert,
}:

let
  hello-service = writeText "hello.service" ''
    [Unit]
    Description=Hello world service

    [Service]
    Type=oneshot
    ExecStart=${hello}/bin/hello
  '';
in
{
  # Example: the hello service as a portable image.
  hello = portableService {
    pname = "hello";
    inherit (hello) version;
    units = [ hello-service ];
  };

  # Example: the same, with /etc/ssl in the image pointing at the CA certificates in the closure.
  hello-with-ssl = portableService {
    pname = "hello";
    inherit (hello) version;
    units = [ hello-service ];
    symlinks = [
      {
        object = "${cacert}/etc/ssl";
        symlink = "/etc/ssl";
      }
    ];
  };

  # The hello image with a dm-verity hash tree and root hash beside it, to sign after the build.
  hello-verity = portableService {
    pname = "hello";
    inherit (hello) version;
    units = [ hello-service ];
    verity = true;
  };

  # The hello image as one Discoverable Disk Image (the file system and its hash tree as
  # partitions of one GPT disk), to sign after the build.
  hello-ddi = portableService {
    pname = "hello";
    inherit (hello) version;
    units = [ hello-service ];
    format = "ddi";
  };
}
