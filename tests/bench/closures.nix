# Generated closures for the benchmark (tests/bench/bench.py), built offline with busybox.
# File contents are pseudo-random words from awk, so they compress like text, not like zeros.
let
  t = import ../nix/offline.nix { };
  awk = "${t.busybox}/bin/busybox awk";

  # A store path holding `files` files of `size` bytes on average (half to one and a half
  # times; files of one size would make mksquashfs's duplicate check quadratic) under
  # share/<n>/, seeded by `seed`.
  # `refs` are written into a file, so the path references them.
  files =
    {
      name,
      files,
      size,
      seed ? 1,
      refs ? [ ],
    }:
    t.runBusyboxWith name
      {
        inherit files size seed;
        refs = toString refs;
      }
      ''
        busybox mkdir -p $out
        echo "$refs" > $out/refs
        for d in $(busybox seq 0 $((files / 1000))); do busybox mkdir -p $out/share/$d; done
        ${awk} -v out="$out" -v n="$files" -v size="$size" -v seed="$seed" 'BEGIN {
          srand(seed)
          split("lorem ipsum dolor sit amet nix store portable service squashfs image closure unit socket timer path target systemd portabled attach detach build stream", w, " ")
          for (i = 0; i < n; i++) {
            if (i % 1000 == 0) dir = out "/share/" int(i / 1000)
            f = dir "/file-" i
            left = int(size * (0.5 + rand()))
            while (left > 0) {
              line = ""
              while (length(line) < 70) line = line w[int(rand() * 24) + 1] (rand() < 0.1 ? sprintf(" %d ", int(rand() * 100000)) : " ")
              line = substr(line, 1, left > 80 ? 79 : left - 1)
              print line > f
              left -= length(line) + 1
            }
            close(f)
          }
        }'
      '';

  # A store path holding `files` files of `size` bytes, each 8 MiB of generated text repeated
  # (generating 1 GiB with awk would take minutes; repeats 8 MiB apart are beyond xz's window).
  large =
    {
      name,
      files,
      size,
      seed ? 1,
    }:
    t.runBusyboxWith name { inherit files size seed; } ''
      busybox mkdir -p $out/share
      ${awk} -v seed="$seed" 'BEGIN {
        srand(seed)
        split("lorem ipsum dolor sit amet nix store portable service squashfs image closure unit socket timer path target systemd portabled attach detach build stream", w, " ")
        for (n = 0; n < 8388608; n += length(line) + 1) {
          line = ""
          while (length(line) < 70) line = line w[int(rand() * 24) + 1] (rand() < 0.1 ? sprintf(" %d ", int(rand() * 100000)) : " ")
          print line
        }
      }' > chunk
      for i in $(busybox seq 1 $files); do
        for k in $(busybox seq 1 $((size / 8388608))); do echo "file $i chunk $k" >> $out/share/file-$i; busybox cat chunk >> $out/share/file-$i; done
      done
    '';

  split =
    name: count: each:
    builtins.genList (
      i:
      files (
        each
        // {
          name = "${name}-${toString i}";
          seed = i + 1;
        }
      )
    ) count;

  chain =
    n:
    files {
      name = "deep-${toString n}";
      files = 20;
      size = 4096;
      seed = n + 1000;
      refs = if n == 0 then [ ] else [ (chain (n - 1)) ];
    };
in
{
  # (a) many small files: 50,000 files, about 200 MB, in 5 store paths
  small = split "small" 5 {
    files = 10000;
    size = 4096;
  };
  # (b) a few large files: 4 of 256 MiB
  large = builtins.genList (
    i:
    large {
      name = "large-${toString i}";
      files = 1;
      size = 268435456;
      seed = i + 1;
    }
  ) 4;
  # an application of about 1 MB: 256 files of 4 KiB (tests/bench/extension.py)
  app = [
    (files {
      name = "app-1mb";
      files = 256;
      size = 4096;
      seed = 4242;
    })
  ];
  # 1,000 store paths of 10 files of 8 KiB, none referencing another (tests/bench/parts.py)
  many-small = split "many-small" 1000 {
    files = 10;
    size = 8192;
  };
  # (c) 300 store paths, each referencing the one before
  deep = [ (chain 299) ];
  # scaling: 10,000 / 50,000 / 100,000 files of 2 KiB
  files-10k = split "files-10k" 1 {
    files = 10000;
    size = 2048;
  };
  files-50k = split "files-50k" 5 {
    files = 10000;
    size = 2048;
  };
  files-100k = split "files-100k" 10 {
    files = 10000;
    size = 2048;
  };
}
