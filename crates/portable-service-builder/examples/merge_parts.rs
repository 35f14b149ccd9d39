//! Merges squashfs parts (written with mksquashfs -noI) into one image, as an image built from
//! parts does: `merge_parts OUT PART...`. For benchmarks and for reading a merge back by hand
//! (a loop mount, unsquashfs).

use camino::Utf8Path;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, parts)) = args.split_first() else {
        anyhow::bail!("usage: merge_parts OUT PART...");
    };
    let parts: Vec<&Utf8Path> = parts.iter().map(Utf8Path::new).collect();
    let started = std::time::Instant::now();
    let merged = portable_service_builder::merge::merge(&parts, Utf8Path::new(out), 0)?;
    eprintln!(
        "{} inodes, {} bytes, in {:.3} s",
        merged.inodes,
        merged.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
