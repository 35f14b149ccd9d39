//! The mksquashfs call: which version it must be, its command line, and running it with the tar
//! stream on its standard input.
//!
//! mksquashfs is the one given by the Nix side (the overridable `squashfsTools`). Every option
//! that makes the bytes depend on the machine or the clock is fixed here: owners (`-all-root`),
//! times (`-mkfs-time`, `-all-time`), root mode, xattrs. Its environment is cleared, because a
//! `SOURCE_DATE_EPOCH` next to `-mkfs-time` is a fatal error in mksquashfs.

use crate::tar_stream::{self, Stats, MTIME};
use anyhow::{bail, Context, Result};
use camino::Utf8Path;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// `-tar` (read the image root as a tar stream on stdin) came with squashfs-tools 4.5.
pub const MIN_VERSION: (u32, u32) = (4, 5);

/// Compressors mksquashfs knows; checked here so that a typo fails before the stream starts.
pub const COMPRESSORS: [&str; 6] = ["gzip", "lzo", "lz4", "xz", "zstd", "lzma"];

/// Every way of writing a block size mksquashfs takes (a power of two from 4 KiB to 1 MiB) that
/// the Nix function accepts too: bytes, `NK`/`Nk`, `1M`/`1m`.
pub fn block_sizes() -> impl Iterator<Item = String> {
    (12..=20).flat_map(|shift| {
        let bytes = 1u32 << shift;
        let kib = bytes / 1024;
        let mib = (shift == 20).then(|| ["1M".to_owned(), "1m".to_owned()]);
        [bytes.to_string(), format!("{kib}K"), format!("{kib}k")]
            .into_iter()
            .chain(mib.into_iter().flatten())
    })
}

/// The mksquashfs options, from the attrs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub compression: Vec<String>,
    pub block_size: String,
    /// How many threads mksquashfs may use (`-processors`); `None`: one per CPU. The image's
    /// bytes don't depend on it.
    pub processors: Option<u32>,
    /// Where in the output file the file system starts (`-offset`): a DDI's root partition.
    pub offset: Option<u64>,
    /// Writes the inode, directory and id tables uncompressed (`-noI`), as [`crate::merge`]
    /// reads them: for a part, and for the rest of an image built from parts.
    pub for_parts: bool,
}

impl Options {
    pub fn new(compression: &str, block_size: &str) -> Result<Options> {
        let compression: Vec<String> = compression.split_whitespace().map(String::from).collect();
        match compression.first() {
            Some(c) if COMPRESSORS.contains(&c.as_str()) => {}
            _ => bail!(
                "attribute `squash-compression` = {:?} must start with a compressor mksquashfs knows: {}",
                compression.join(" "),
                COMPRESSORS.join(", ")
            ),
        }
        if let Some(word) = foreign_option(&compression[1..]) {
            bail!(
                "attribute `squash-compression` = {:?} may hold after the compressor only its own \
                 options (`-X...`, each with its value), not `{word}`: the builder sets \
                 mksquashfs's other options itself, so that an image's bytes depend on its inputs alone",
                compression.join(" ")
            );
        }
        if !block_sizes().any(|s| s == block_size) {
            bail!(
                "attribute `squash-block-size` = {block_size:?} must be a power of two from 4K to \
                 1M, such as \"128K\", \"1M\" or 131072"
            );
        }
        Ok(Options {
            compression,
            block_size: block_size.to_owned(),
            processors: None,
            offset: None,
            for_parts: false,
        })
    }

    /// The arguments after `mksquashfs`, reading the root from stdin and writing `image`.
    pub fn args(&self, image: &Utf8Path) -> Vec<String> {
        let time = MTIME.to_string();
        let mut args: Vec<String> = [
            "-",
            image.as_str(),
            "-tar",
            "-noappend",
            "-quiet",
            "-no-progress",
            "-exit-on-error",
            "-all-root",
            "-root-mode",
            "0755",
            "-no-xattrs",
            "-mkfs-time",
            &time,
            "-all-time",
            &time,
            "-b",
            &self.block_size,
            "-comp",
        ]
        .map(String::from)
        .to_vec();
        args.extend(self.compression.iter().cloned());
        if let Some(offset) = self.offset {
            args.extend(["-offset".to_owned(), offset.to_string()]);
        }
        if self.for_parts {
            args.push("-noI".to_owned());
        }
        if let Some(n) = self.processors {
            args.extend(["-processors".to_owned(), n.to_string()]);
        }
        args
    }
}

/// The first word of a compressor's options that is not one of its own (`-X...`) or the one value
/// after such an option: `-nopad` or `-all-time 5` would change the image's layout, times or
/// padding behind the builder's back (the Nix function holds the same rule).
fn foreign_option(options: &[String]) -> Option<&str> {
    let is_compressor_option = |w: &str| w.len() > 2 && w.starts_with("-X");
    options.iter().enumerate().find_map(|(i, word)| {
        let value_of_previous =
            i > 0 && is_compressor_option(&options[i - 1]) && !word.starts_with('-');
        (!is_compressor_option(word) && !value_of_previous).then_some(word.as_str())
    })
}

/// Reads `major.minor` from `mksquashfs -version` ("mksquashfs version 4.5.1 (2022/03/17)").
pub fn parse_version(output: &str) -> Option<(u32, u32)> {
    let rest = output.split("version").nth(1)?.trim_start();
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = number.split('.').map(str::parse::<u32>);
    Some((
        parts.next()?.ok()?,
        parts.next().and_then(Result::ok).unwrap_or(0),
    ))
}

/// Fails unless `mksquashfs` is new enough for `-tar`.
pub fn check_version(mksquashfs: &Utf8Path) -> Result<()> {
    let output = Command::new(mksquashfs)
        .arg("-version")
        .env_clear()
        .output()
        .with_context(|| format!("cannot run {mksquashfs} (attribute `mksquashfs`)"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(version) = parse_version(&text) else {
        // a mksquashfs that can't start (a library missing, the wrong architecture) says why on
        // stderr, and that is what the user needs to read
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said: Vec<&str> = stderr
            .lines()
            .chain(text.lines())
            .take(TAIL_LINES)
            .collect();
        bail!(
            "cannot read the version of {mksquashfs} (attribute `mksquashfs`): \
             `mksquashfs -version` ended with {} and said: {}",
            output.status,
            if said.is_empty() {
                "nothing".to_owned()
            } else {
                said.join("\n")
            }
        );
    };
    if version < MIN_VERSION {
        bail!(
            "{mksquashfs} is version {}.{}; the image root is streamed to it as a tar archive \
             (`-tar`), which needs squashfs-tools {}.{} or newer: override `squashfsTools` with a newer one",
            version.0,
            version.1,
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    Ok(())
}

/// How many of mksquashfs's last lines of output an error repeats.
const TAIL_LINES: usize = 20;

/// Runs mksquashfs writing `image`, streaming `plan` into it. mksquashfs's messages go to the
/// build log as they come, and its last lines are repeated in the error if it fails.
///
/// Whichever side stops first, the other is not waited on forever: if mksquashfs dies, the
/// stream's next write fails (the pipe has no reader) and the stream ends; if the stream fails,
/// its end of the pipe is closed and mksquashfs sees the end of its input.
pub fn build(
    mksquashfs: &Utf8Path,
    options: &Options,
    plan: &crate::plan::Plan,
    image: &Utf8Path,
) -> Result<Stats> {
    let args = options.args(image);
    tracing::info!("running {mksquashfs} {}", args.join(" "));
    let mut child = Command::new(mksquashfs)
        .args(&args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {mksquashfs}"))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let tail = std::thread::spawn(move || forward_keeping_tail(stderr));
    let stdin = child.stdin.take().expect("stdin is piped");
    // A bigger pipe means fewer switches between us and mksquashfs; the default size works too.
    let _ = rustix::pipe::fcntl_setpipe_size(&stdin, 1 << 20);
    let started = std::time::Instant::now();
    let streamed = tar_stream::write(plan, stdin);
    if let Ok(stats) = &streamed {
        tracing::info!(
            "streamed the whole root in {:.1} s ({} files, {} MiB); mksquashfs is finishing the \
             image (its last blocks, its tables)",
            started.elapsed().as_secs_f64(),
            stats.files,
            stats.bytes >> 20
        );
    }
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for {mksquashfs}"))?;
    let tail = tail.join().unwrap_or_default();
    let said = if tail.is_empty() {
        "it printed nothing".to_owned()
    } else {
        format!("its last output:\n{}", tail.join("\n"))
    };
    match (streamed, status.success()) {
        // The stream's own failure (a store file gone, say) is the cause; mksquashfs then only
        // saw its input end early.
        (Err(e), _) if !is_broken_pipe(&e) => Err(e.context(format!(
            "streaming the image root into mksquashfs failed (mksquashfs: {status})"
        ))),
        (Ok(stats), true) => Ok(stats),
        (_, false) => bail!("{mksquashfs} failed ({status}); {said}"),
        (Err(_), true) => bail!(
            "{mksquashfs} exited successfully before it had read the whole image root; {said}"
        ),
    }
}

/// Whether the stream failed only because mksquashfs stopped reading.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Copies mksquashfs's stderr to ours line by line, and returns its last [`TAIL_LINES`] lines.
fn forward_keeping_tail(from: impl Read) -> Vec<String> {
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    for line in BufReader::new(from).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).into_owned();
        eprintln!("{line}");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_of_every_form_seen() {
        assert_eq!(
            parse_version("mksquashfs version 4.5.1 (2022/03/17)\ncopyright"),
            Some((4, 5))
        );
        assert_eq!(
            parse_version("mksquashfs version 4.7.2 (2025/08/02)"),
            Some((4, 7))
        );
        assert_eq!(
            parse_version("mksquashfs version 4.4-git.1 (2020/08/09)"),
            Some((4, 4))
        );
        assert_eq!(parse_version("nonsense"), None);
    }

    #[test]
    fn compression_and_block_size_become_options() {
        let o = Options::new("zstd -Xcompression-level 3", "128K").unwrap();
        let args = o.args(Utf8Path::new("/out/x.raw"));
        let line = args.join(" ");
        assert!(line.starts_with("- /out/x.raw -tar "), "{line}");
        assert!(
            line.ends_with("-b 128K -comp zstd -Xcompression-level 3"),
            "{line}"
        );
        assert!(line.contains("-all-root -root-mode 0755"), "{line}");
    }

    #[test]
    fn unknown_compressors_and_bad_sizes_are_named() {
        let e = Options::new("xy -Xdict-size 100%", "1M")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`squash-compression` = \"xy -Xdict-size 100%\""),
            "{e}"
        );
        let e = Options::new("", "1M").unwrap_err().to_string();
        assert!(e.contains("`squash-compression`"), "{e}");
        for bad in ["1 M", "3M", "2M", "2K", "0", "04K", "131073"] {
            let e = Options::new("xz", bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`squash-block-size` = {bad:?}")), "{e}");
        }
        for good in ["4K", "4096", "128k", "131072", "1M", "1m", "1024K"] {
            Options::new("xz", good).unwrap();
        }
    }

    #[test]
    fn only_the_compressor_s_own_options_pass() {
        for good in [
            "xz -Xdict-size 100%",
            "xz -Xbcj x86 -Xdict-size 50%",
            "zstd -Xcompression-level 19",
            "lz4 -Xhc",
            "gzip",
        ] {
            Options::new(good, "1M").unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, word) in [
            ("xz -nopad", "-nopad"),
            ("xz -Xdict-size 100% -all-time 5", "-all-time"),
            ("zstd 19", "19"),
            ("gzip -Xcompression-level 9 9", "9"),
            ("xz -X", "-X"),
        ] {
            let e = Options::new(bad, "1M").unwrap_err().to_string();
            assert!(
                e.contains(&format!("`squash-compression` = {bad:?}"))
                    && e.contains(&format!("not `{word}`")),
                "{bad}: {e}"
            );
        }
    }
}
