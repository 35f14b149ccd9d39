//! What the commands take as an image, and where they may write beside one.
//!
//! An image is named by its `.raw` file or by the output directory `nix build` leaves
//! (`result`), which holds one: [`image_file`] finds it, or says what it found instead.
//!
//! Nothing is written inside the Nix store ([`refuse_in_store`]): its files are shared by every
//! user and every build on the machine and must stay the bytes the store recorded. The
//! store's files are read-only, but root can write them all the same (as `sign` once did,
//! exiting 0), so the path is checked, after following symbolic links such as `result`.

use crate::exit::Failure;
use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

/// The image `path` names: the file itself, or the one `*.raw` in a directory.
pub fn image_file(path: &Utf8Path) -> Result<Utf8PathBuf> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => e.to_string(),
        };
        Failure::unreadable(path, format!("cannot read {path}: {why}"))
    })?;
    if meta.is_file() {
        return Ok(path.to_owned());
    }
    if !meta.is_dir() {
        // a pipe or a device would be read forever, or not at all
        return Err(
            Failure::unreadable(path, format!("{path} is neither a file nor a directory")).into(),
        );
    }
    let entries = path
        .read_dir_utf8()
        .map_err(|e| Failure::unreadable(path, format!("cannot list the directory {path}: {e}")))?;
    let mut raws: Vec<Utf8PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_owned())
        // files only, links followed: a directory or a dangling link named *.raw is no image
        .filter(|p| p.extension() == Some("raw") && p.metadata().is_ok_and(|m| m.is_file()))
        .collect();
    raws.sort();
    match raws.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure::unreadable(
            path,
            format!(
                "{path} is a directory without an image: no *.raw file in it (an image's \
                 `nix build` output holds one)"
            ),
        )
        .into()),
        many => {
            let names: Vec<&str> = many.iter().filter_map(|p| p.file_name()).collect();
            Err(Failure::unreadable(
                path,
                format!(
                    "{path} is a directory of {} images ({}): name the one meant, as {}",
                    many.len(),
                    names.join(", "),
                    many[0]
                ),
            )
            .into())
        }
    }
}

/// The Nix store directory: `NIX_STORE_DIR` as Nix reads it, else `/nix/store`.
pub fn store_dir() -> Utf8PathBuf {
    std::env::var("NIX_STORE_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .map_or_else(|| Utf8PathBuf::from("/nix/store"), Utf8PathBuf::from)
}

/// Where `path` really is, if that is inside the Nix store (both compared with every symbolic
/// link resolved, so `result/NAME.raw` and a store reached through a link are caught). The
/// store is [`store_dir`], and `/nix/store` too where that names another: a machine's usual
/// store stays guarded whatever the environment says.
pub fn in_store(path: &Utf8Path) -> Option<Utf8PathBuf> {
    let real = path.canonicalize_utf8().ok()?;
    [store_dir(), Utf8PathBuf::from("/nix/store")]
        .into_iter()
        .map(|store| store.canonicalize_utf8().unwrap_or(store))
        .any(|store| real.starts_with(&store))
        .then_some(real)
}

/// Refuses `image` inside the Nix store, where `job` (`"sign"`) would write `what`; `redo` is the
/// command to run on a copy, given the copy's file name. The refusal names the copy to make:
/// the image and the `files` that go with it, copied writable into the current directory.
/// `in_place`: `what` writes into the image's own bytes, so an image with another name (a
/// hard link, as `cp -l result/NAME.raw .` makes) is refused too: that name may be in the
/// store, where no path says so.
pub fn refuse_in_store(
    image: &Utf8Path,
    files: &[Utf8PathBuf],
    what: &str,
    in_place: bool,
    redo: impl Fn(&str) -> String,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let links = std::fs::metadata(image).map_or(1, |m| m.nlink());
    let real = match in_store(image) {
        Some(real) => real,
        None if in_place && links > 1 => {
            return Err(Failure::refused(
                image,
                format!(
                    "{image} has {links} names (hard links), and one may be in the Nix store, \
                     which must not change: {what}; work on a copy instead: cp \
                     --no-preserve=mode {} copy.raw && {}",
                    shell_word(image.as_str()),
                    redo("copy.raw")
                ),
            )
            .into())
        }
        None => return Ok(()),
    };
    let name = image.file_name().unwrap_or("image.raw");
    let copied: Vec<String> = std::iter::once(image)
        .chain(files.iter().map(|f| f.as_path()).filter(|f| f.exists()))
        .map(|f| shell_word(f.as_str()))
        .collect();
    let real_note = if real == image {
        String::new()
    } else {
        format!(" ({real})")
    };
    Err(Failure::refused(
        image,
        format!(
            "{image} is in the Nix store{real_note}, which must not change: {what}; work on a \
             copy instead: cp --no-preserve=mode {} . && {}",
            copied.join(" "),
            redo(&shell_word(name))
        ),
    )
    .into())
}

/// Refuses an output path (`what`: the option that names it) inside the Nix store: `path` or,
/// when it doesn't exist yet, the nearest directory above it that does.
pub fn refuse_output_in_store(path: &Utf8Path, what: &str) -> Result<()> {
    let existing = path
        .ancestors()
        .find(|p| !p.as_str().is_empty() && p.exists())
        .unwrap_or(Utf8Path::new("."));
    match in_store(existing) {
        Some(real) => Err(Failure::refused(
            path,
            format!(
                "{what} {path} is in the Nix store ({real}), which must not change: name a \
                 place outside it"
            ),
        )
        .into()),
        None => Ok(()),
    }
}

/// What the system said of a failed file operation, without Rust's `(os error N)`.
pub fn io_words(error: &std::io::Error) -> String {
    let said = error.to_string();
    match said.rsplit_once(" (os error ") {
        Some((words, _)) => words.to_owned(),
        None => said,
    }
}

/// `word` as a shell reads it back: as it is when it holds no character the shell treats
/// specially, else in single quotes.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-+=.,/:@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("result/demo_1.raw"), "result/demo_1.raw");
        assert_eq!(shell_word("my key.pem"), "'my key.pem'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
