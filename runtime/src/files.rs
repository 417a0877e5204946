//! State files: written atomically, read defensively.
//!
//! A state file is either its old content or its new content, never half of
//! one: write a temporary file in the same directory, fsync it, rename it over
//! the old one, fsync the directory. A crash at any point leaves one or the
//! other.
//!
//! Reading one at start must not hurt the box: a file over [`STATE_FILE_LIMIT`]
//! is never read into memory, and anything that is not a readable regular
//! file (a directory, a device) is set aside like a corrupt file, so that the
//! service starts afresh and says so rather than exit (which, under systemd,
//! is a restart loop).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

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

/// Refuses a secret file (tokens, TLS key) that group or others may write:
/// whoever can write it can let themselves in. `flag` names it in the
/// error, which says how to fix it (as ssh does for its keys).
pub fn check_private(path: &Path, flag: &str) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::Security(format!("{flag} {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(Error::Security(format!(
            "{flag} {path}: permissions {perm:04o} are too open: group or others may write it, and so \
             give themselves access. Run `chmod go-w {path}` (and keep it owned by the service's user)",
            path = path.display(),
            perm = mode & 0o7777,
        )));
    }
    Ok(())
}

/// The most a state file read whole at start may weigh. Ours weigh a few
/// KiB; 1 MiB leaves room and keeps a Raspberry-class box safe from a
/// runaway or misplaced file.
pub const STATE_FILE_LIMIT: u64 = 1024 * 1024;

/// What loading a state file at start found.
#[derive(Debug)]
pub enum Loaded<T> {
    /// No file yet: a first start.
    Missing,
    Found(T),
    /// Unusable (corrupt, oversized, a directory…), so renamed to
    /// `set_aside` (see [`set_aside`]) for a person to look at.
    SetAside {
        set_aside: PathBuf,
        reason: String,
    },
}

/// Loads the state file `path` with `parse`. A file over `limit` bytes is
/// never read; a file `parse` rejects, or something that is not a readable
/// regular file, is set aside and reported as [`Loaded::SetAside`]. The
/// only error is a file that can be neither used nor moved out of the way.
pub fn load_state_file<T>(
    path: &Path,
    limit: u64,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Loaded<T>, Error> {
    let unusable = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => format!("cannot look at it: {e}"),
        Ok(meta) if meta.is_dir() => "a directory, where a file was expected".to_owned(),
        Ok(meta) if !meta.is_file() => "not a regular file".to_owned(),
        Ok(meta) if meta.len() > limit => over_limit(meta.len(), limit),
        Ok(_) => match read_at_most(path, limit) {
            // It may have grown since `metadata`.
            Ok(bytes) if bytes.len() as u64 > limit => over_limit(bytes.len() as u64, limit),
            Ok(bytes) => match parse(&bytes) {
                Ok(value) => return Ok(Loaded::Found(value)),
                Err(reason) => reason,
            },
            Err(e) => format!("cannot read it: {e}"),
        },
    };
    match set_aside(path) {
        Ok(set_aside) => Ok(Loaded::SetAside {
            set_aside,
            reason: unusable,
        }),
        Err(source) => Err(Error::SetAside {
            path: path.to_owned(),
            reason: unusable,
            source,
        }),
    }
}

/// Reads at most `limit` bytes of a file that is not ours to set aside (a
/// forecast file a person points at): over the limit is an error.
pub fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let bytes = read_at_most(path, limit)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("over the {limit}-byte limit"),
        ));
    }
    Ok(bytes)
}

fn over_limit(len: u64, limit: u64) -> String {
    format!("{len} bytes, over the {limit}-byte limit for a state file")
}

/// Up to `limit + 1` bytes: enough to tell that a file is over the limit
/// without reading the rest.
fn read_at_most(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Renames a corrupt state file to `<name>.corrupt-<UTC time>` beside it, so
/// that the service can start afresh without losing what was there (a person
/// can look at it). Returns the new path.
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
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
    fn a_state_file_is_read_when_within_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let whole = |b: &[u8]| Ok::<_, String>(b.to_vec());
        assert!(matches!(
            load_state_file(&path, 8, whole).expect("read"),
            Loaded::Missing
        ));
        std::fs::write(&path, b"12345678").expect("write");
        match load_state_file(&path, 8, whole).expect("read") {
            Loaded::Found(bytes) => assert_eq!(bytes, b"12345678"),
            other => panic!("{other:?}"),
        }
        match load_state_file(&path, 8, |_| Err::<(), _>("bad".to_owned())).expect("read") {
            Loaded::SetAside { reason, .. } => assert_eq!(reason, "bad"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_oversized_state_file_is_set_aside_unread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        // Sparse: a gigabyte that costs nothing to make.
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(1 << 30).expect("grow");
        let parse = |_: &[u8]| -> Result<(), String> { panic!("must not be read") };
        match load_state_file(&path, STATE_FILE_LIMIT, parse).expect("read") {
            Loaded::SetAside { set_aside, reason } => {
                assert!(reason.contains("1073741824 bytes"), "{reason}");
                assert!(reason.contains("limit"), "{reason}");
                assert!(!path.exists());
                assert_eq!(std::fs::metadata(&set_aside).expect("kept").len(), 1 << 30);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_directory_in_place_of_a_state_file_is_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        std::fs::create_dir(&path).expect("mkdir");
        std::fs::write(path.join("inside"), b"kept").expect("write");
        let parse = |_: &[u8]| -> Result<(), String> { panic!("must not be read") };
        match load_state_file(&path, STATE_FILE_LIMIT, parse).expect("read") {
            Loaded::SetAside { set_aside, reason } => {
                assert!(reason.contains("directory"), "{reason}");
                assert!(!path.exists());
                assert_eq!(
                    std::fs::read(set_aside.join("inside")).expect("kept"),
                    b"kept"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_secret_file_others_may_write_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, b"x").expect("write");
        for (mode, ok) in [
            (0o600, true),
            (0o644, true),
            (0o640, true),
            (0o664, false),
            (0o646, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let result = check_private(&path, "--tokens");
            assert_eq!(result.is_ok(), ok, "{mode:o}: {result:?}");
            if let Err(e) = result {
                let e = e.to_string();
                assert!(
                    e.contains(&format!("{mode:04o}")) && e.contains("chmod go-w"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn an_unwritable_dir_is_an_error_naming_it() {
        let err =
            ensure_writable_dir(Path::new("/proc/delestage-cannot-exist")).expect_err("must fail");
        assert!(err.to_string().contains("/proc/delestage-cannot-exist"));
    }
}
