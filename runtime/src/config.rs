//! Config files: TOML, typed, strict.
//!
//! Every service describes its file as a `#[serde(deny_unknown_fields)]`
//! struct of `Option`s, so that a typo is an error naming the file and the
//! key, and so that flags can win over the file field by field.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::Error;

/// Reads and parses a TOML config file. Errors name the file, and for a bad
/// or unknown key, the key, line and column.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| Error::ConfigInvalid {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// Where a service keeps its state when no `--state-dir` is given:
/// systemd's `$STATE_DIRECTORY` when it set one, else
/// `$XDG_STATE_HOME/delestage/<service>`, else
/// `~/.local/state/delestage/<service>`, else `./delestage-state/<service>`.
pub fn default_state_dir(service: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may pass several, colon-separated; the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        return PathBuf::from(first);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        });
    match base {
        Some(base) => base.join("delestage").join(service),
        None => PathBuf::from("delestage-state").join(service),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        listen: Option<String>,
    }

    #[test]
    fn a_typo_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("svc.toml");
        std::fs::write(&path, "listn = \"127.0.0.1:1\"\n").expect("write");
        let err = load_toml::<Sample>(&path).expect_err("typo must fail");
        let msg = err.to_string();
        assert!(msg.contains("svc.toml"), "{msg}");
        assert!(msg.contains("listn"), "{msg}");
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let err = load_toml::<Sample>(Path::new("/nonexistent/x.toml")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/x.toml"));
    }
}
