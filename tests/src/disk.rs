//! A state dir that the test can make unwritable, for real, and give back.
//!
//! As root (as CI runs), permissions do not stop writes, so the dir is a
//! small tmpfs of its own that the test fills up: the service meets the
//! very `ENOSPC` of a full SD card. Otherwise the dir is made read-only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// See the module docs.
pub struct SmallDisk {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl SmallDisk {
    /// A fresh, writable dir: a 1 MiB tmpfs when running as root.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = nix::unistd::geteuid().is_root();
        if mounted {
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m", "delestage-test"])
                .arg(dir.path())
                .status()
                .expect("run mount");
            assert!(
                status.success(),
                "as root, this test needs to mount a small tmpfs (CAP_SYS_ADMIN): mount exited with {status}"
            );
        }
        Self { dir, mounted }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.dir.path().join("filler")
    }

    /// No write succeeds any more: the tmpfs is full, or the dir read-only.
    pub fn make_unwritable(&self) {
        if self.mounted {
            let mut filler = std::fs::File::create(self.filler()).expect("create the filler");
            let chunk = vec![0u8; 64 * 1024];
            loop {
                if let Err(e) = filler.write_all(&chunk).and_then(|()| filler.sync_all()) {
                    assert_eq!(e.raw_os_error(), Some(nix::libc::ENOSPC), "{e}");
                    break;
                }
            }
            // Fill the last pages too.
            while filler.write_all(&[0]).is_ok() {}
        } else {
            set_mode(self.path(), 0o555);
        }
    }

    /// Space (or write permission) is back.
    pub fn make_writable(&self) {
        if self.mounted {
            std::fs::remove_file(self.filler()).expect("remove the filler");
        } else {
            set_mode(self.path(), 0o755);
        }
    }
}

impl Default for SmallDisk {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            // Lazy: a service still running in it must not keep it mounted.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        } else {
            set_mode(self.path(), 0o755);
        }
    }
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
