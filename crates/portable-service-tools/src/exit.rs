//! How a command ends: its exit status, one scheme for every command (the table [`TABLE`],
//! which each `--help` ends with and docs/cli.md repeats), and the kind of a failure, which the
//! code that finds it marks ([`Failure`]) and `main` reads back to choose the status and to
//! fill `--json`'s error object.

use camino::{Utf8Path, Utf8PathBuf};

/// Done: check's verdict is "accepted"; sign signed, publish published, transfers wrote.
pub const OK: u8 = 0;
/// Refused: check's verdict is "refused"; or the inputs were read and the job is not done
/// because of what they say (a hash tree that doesn't match its image, a key that isn't its
/// certificate's, a signature by no certificate given, an image inside the Nix store, a feed
/// that doesn't add up), or its result could not be written.
pub const REFUSED: u8 = 1;
/// An input could not be read as what it must be: missing, unreadable, not an image (a key, a
/// certificate...). check gives no verdict.
pub const UNREADABLE: u8 = 2;
/// The command line is wrong (an unknown option, a missing argument, a value out of range):
/// nothing was read. sysexits.h's EX_USAGE, apart from 2, which means an unreadable input.
pub const USAGE: u8 = 64;

/// The table of exit statuses, as `--help` ends with it.
pub const TABLE: &str = "\
Exit status (the same for every command):
  0   done; check: accepted (systemd would attach the image and its units can start)
  1   refused: check's verdict is \"refused\"; or the job is not done because of what the
      inputs say (a hash tree that doesn't match, a key that isn't the certificate's, a
      signature by no certificate given, an image in the Nix store, a feed that doesn't add
      up), or its result could not be written
  2   an input could not be read as what it must be (missing, unreadable, not an image, key
      or certificate): check gives no verdict
  64  the command line is wrong (unknown option, missing argument, value out of range)";

/// A failure whose exit status and file are known where it is found. Put on an error as its
/// context (or made the error), it says the message; `main` finds it with [`status_of`].
#[derive(Debug)]
pub struct Failure {
    pub exit: u8,
    pub file: Option<Utf8PathBuf>,
    pub message: String,
}

impl Failure {
    /// `file` could not be read as what it must be.
    pub fn unreadable(file: impl AsRef<Utf8Path>, message: impl Into<String>) -> Failure {
        Failure {
            exit: UNREADABLE,
            file: Some(file.as_ref().to_owned()),
            message: message.into(),
        }
    }

    /// A value on the command line is out of what the command takes.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            exit: USAGE,
            file: None,
            message: message.into(),
        }
    }

    /// The job is not done because of what `file` is or holds.
    pub fn refused(file: impl AsRef<Utf8Path>, message: impl Into<String>) -> Failure {
        Failure {
            exit: REFUSED,
            file: Some(file.as_ref().to_owned()),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Marks an error found reading `file` as unreadable input, keeping its message: for
/// `map_err` where reading a file fails in several ways.
pub fn unreadable(file: &Utf8Path) -> impl FnOnce(anyhow::Error) -> anyhow::Error + '_ {
    move |e| Failure::unreadable(file, format!("{e:#}")).into()
}

/// The exit status of `error` and the file it is about: the outermost [`Failure`] marked on
/// it, else `default` (the command's status for a failure nobody classified) and no file.
pub fn status_of(error: &anyhow::Error, default: u8) -> (u8, Option<&Utf8Path>) {
    match error.downcast_ref::<Failure>() {
        Some(f) => (f.exit, f.file.as_deref()),
        None => (default, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_failure_under_context_keeps_its_status_and_file() {
        let inner: anyhow::Result<()> = Err(Failure::unreadable("k.pem", "k.pem is no key").into());
        let error = inner.context("cannot sign").unwrap_err();
        assert_eq!(
            status_of(&error, REFUSED),
            (UNREADABLE, Some(Utf8Path::new("k.pem")))
        );
        let io: anyhow::Result<()> = Err(std::io::Error::other("disk full"))
            .with_context(|| Failure::refused("a.raw", "cannot write a.raw"));
        let error = io.unwrap_err();
        assert_eq!(status_of(&error, UNREADABLE).0, REFUSED);
        assert_eq!(format!("{error:#}"), "cannot write a.raw: disk full");
        let plain = anyhow::anyhow!("something else");
        assert_eq!(status_of(&plain, UNREADABLE), (UNREADABLE, None));
    }
}
