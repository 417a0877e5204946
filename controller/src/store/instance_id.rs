//! `instance-id`: 128 random bits in hex, written once in the state dir.
//! This controller's identity, which seeds its restore jitter, so the delay
//! is the same at every restart and differs from home to home.

use std::path::Path;

use super::OpenReport;
use crate::Error;

/// The seed in `path`, written there first if missing (a file that cannot
/// be read as one is set aside, reported, and replaced: the jitter's delay
/// changes then, nothing else does).
pub(super) fn seed(path: &Path, report: &mut OpenReport) -> Result<u64, Error> {
    let parse = |text: &str| -> Option<u64> {
        let text = text.trim();
        (text.len() == 32 && text.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(&text[..16], 16).ok())
            .flatten()
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if let Some(seed) = parse(&text) {
                return Ok(seed);
            }
            report.problems.push(format!(
                "{} is not 32 hex digits; a new instance id is written (the restore jitter's delay changes)",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::StateFile {
                action: "read",
                path: path.to_owned(),
                source: e,
            });
        }
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    delestage_runtime::files::write_atomic(path, format!("{hex}\n").as_bytes())?;
    // The seed is the first 16 hex digits, as `parse` reads them back.
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    Ok(u64::from_be_bytes(first))
}

#[cfg(test)]
mod tests {
    use super::super::Store;

    #[test]
    fn the_instance_id_is_written_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let seed = store.instance_seed();
        drop(store);
        let (again, report) = Store::open(dir.path()).expect("reopen");
        assert_eq!(again.instance_seed(), seed);
        assert!(report.problems.is_empty());
        let other = tempfile::tempdir().expect("tempdir");
        let (elsewhere, _) = Store::open(other.path()).expect("open");
        assert_ne!(elsewhere.instance_seed(), seed);
        drop(again);
        std::fs::write(dir.path().join(Store::INSTANCE_ID), "junk").expect("write");
        let (_, report) = Store::open(dir.path()).expect("reopen");
        assert!(
            report.problems[0].contains("instance-id"),
            "{:?}",
            report.problems
        );
    }
}
