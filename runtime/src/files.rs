//! Atomic state files.
//!
//! A state file is either its old content or its new content, never half of
//! one: write a temporary file in the same directory, fsync it, rename it over
//! the old one, fsync the directory. A crash at any point leaves one or the
//! other.

use std::{io::Write, path::Path};

use crate::Error;

/// Replaces `path` with `contents` atomically (see the module docs).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let err = |source| Error::WriteFile {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(contents).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    // Make the rename itself durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

/// Creates `dir` (and parents) and checks that it is writable, so that a
/// service fails at start with a clear error rather than on its first write.
pub fn ensure_writable_dir(dir: &Path) -> Result<(), Error> {
    let err = |source| Error::StateDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    tempfile::Builder::new()
        .prefix(".probe-")
        .tempfile_in(dir)
        .map_err(err)?;
    Ok(())
}

/// Renames a corrupt state file to `<name>.corrupt-<UTC time>` beside it, so
/// that the service can start afresh without losing what was there (a person
/// can look at it). Returns the new path.
pub fn set_aside(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "-");
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".corrupt-{stamp}"));
    let set_aside = path.with_file_name(name);
    std::fs::rename(path, &set_aside)?;
    Ok(set_aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        write_atomic(&path, b"first, longer content").expect("write 1");
        write_atomic(&path, b"second").expect("write 2");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn set_aside_keeps_the_content_under_a_new_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"garbage").expect("write");
        let aside = set_aside(&path).expect("set aside");
        assert!(!path.exists());
        assert_eq!(std::fs::read(&aside).expect("read"), b"garbage");
        let name = aside
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("state.json.corrupt-"), "{name}");
    }

    #[test]
    fn an_unwritable_dir_is_an_error_naming_it() {
        let err =
            ensure_writable_dir(Path::new("/proc/delestage-cannot-exist")).expect_err("must fail");
        assert!(err.to_string().contains("/proc/delestage-cannot-exist"));
    }
}
