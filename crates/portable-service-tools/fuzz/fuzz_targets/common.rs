//! What the targets share: a file per process for the readers that take a path.

use camino::Utf8PathBuf;

/// `name` in a directory of this process's own, holding `data`.
pub fn file_with(name: &str, data: &[u8]) -> Utf8PathBuf {
    let dir = std::env::temp_dir().join(format!("portable-service-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.join(name)).unwrap();
    std::fs::write(&path, data).unwrap();
    path
}
