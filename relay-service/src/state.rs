//! The intended state of every channel, persisted in the state dir.
//!
//! libphidget22 turns a relay off when its channel is opened, so a restart
//! (or a power cut) would otherwise switch every appliance off. The service
//! writes each change here, atomically, and re-applies the file at start.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use delestage_runtime::files;
use serde::{Deserialize, Serialize};

use crate::Error;

/// One channel's intended state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ChannelState {
    pub energized: bool,
    /// When it last changed; `None` if never (since the file was created).
    pub changed_at: Option<SystemTime>,
}

/// The state file in a state dir.
#[derive(Debug, Clone)]
pub(crate) struct StateFile {
    path: PathBuf,
}

/// What was found at start.
pub(crate) type Loaded = files::Loaded<Vec<ChannelState>>;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    relays: Vec<OnDiskRelay>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDiskRelay {
    channel: u32,
    energized: bool,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    changed_at: Option<String>,
}

const FORMAT_VERSION: u32 = 1;

impl StateFile {
    pub(crate) const FILE_NAME: &'static str = "relays.json";

    pub(crate) fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join(Self::FILE_NAME),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file. A corrupt, oversized or misplaced file is not fatal:
    /// it is renamed aside (so nothing is lost and a person can look at it)
    /// and reported.
    pub(crate) fn load(&self, channels: usize) -> Result<Loaded, Error> {
        Ok(files::load_state_file(
            &self.path,
            files::STATE_FILE_LIMIT,
            |bytes| parse(bytes, channels),
        )?)
    }

    /// Replaces the file with `states`, atomically.
    pub(crate) fn save(&self, states: &[ChannelState]) -> Result<(), Error> {
        let on_disk = OnDisk {
            version: FORMAT_VERSION,
            relays: states
                .iter()
                .enumerate()
                .map(|(channel, s)| OnDiskRelay {
                    channel: channel as u32,
                    energized: s.energized,
                    changed_at: s
                        .changed_at
                        .map(|t| humantime::format_rfc3339_nanos(t).to_string()),
                })
                .collect(),
        };
        let mut json = serde_json::to_vec_pretty(&on_disk).map_err(|e| Error::StateWrite {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        delestage_runtime::files::write_atomic(&self.path, &json).map_err(|e| Error::StateWrite {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }
}

/// Parses a state file for a board of `channels` channels. Channels the file
/// does not mention start off; channels beyond the board are ignored (the
/// board may have been reconfigured with fewer).
fn parse(bytes: &[u8], channels: usize) -> Result<Vec<ChannelState>, String> {
    let on_disk: OnDisk = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if on_disk.version != FORMAT_VERSION {
        return Err(format!(
            "unsupported version {} (expected {FORMAT_VERSION})",
            on_disk.version
        ));
    }
    let mut states = vec![ChannelState::default(); channels];
    for relay in on_disk.relays {
        let changed_at = match relay.changed_at {
            Some(s) => Some(
                humantime::parse_rfc3339(&s)
                    .map_err(|e| format!("channel {}: changed_at {s:?}: {e}", relay.channel))?,
            ),
            None => None,
        };
        if let Some(slot) = states.get_mut(relay.channel as usize) {
            *slot = ChannelState {
                energized: relay.energized,
                changed_at,
            };
        } else {
            tracing::warn!(
                channel = relay.channel,
                channels,
                "state file mentions a channel the board does not have; ignored"
            );
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_states_load_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::in_dir(dir.path());
        let t = humantime::parse_rfc3339("2026-11-26T08:00:00.123Z").expect("time");
        let states = vec![
            ChannelState {
                energized: true,
                changed_at: Some(t),
            },
            ChannelState::default(),
        ];
        file.save(&states).expect("save");
        match file.load(2).expect("load") {
            Loaded::Found(back) => assert_eq!(back, states),
            other => panic!("expected Found, got {other:?}"),
        }
    }

    #[test]
    fn no_file_is_a_first_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            StateFile::in_dir(dir.path()).load(8).expect("load"),
            Loaded::Missing
        ));
    }

    #[test]
    fn a_corrupt_file_is_set_aside_not_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::in_dir(dir.path());
        std::fs::write(file.path(), b"{\"version\":1,\"relays\":[{\"chan").expect("write");
        match file.load(8).expect("load") {
            Loaded::SetAside { set_aside, reason } => {
                assert!(!reason.is_empty());
                assert_eq!(
                    std::fs::read(&set_aside).expect("kept"),
                    b"{\"version\":1,\"relays\":[{\"chan"
                );
                assert!(!file.path().exists());
            }
            other => panic!("expected SetAside, got {other:?}"),
        }
    }

    #[test]
    fn channels_beyond_the_board_are_ignored_and_missing_ones_start_off() {
        let json = br#"{"version":1,"relays":[{"channel":1,"energized":true},{"channel":9,"energized":true}]}"#;
        let states = parse(json, 3).expect("parse");
        assert_eq!(
            states.iter().map(|s| s.energized).collect::<Vec<_>>(),
            vec![false, true, false]
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn channel_state() -> impl Strategy<Value = ChannelState> {
            (
                any::<bool>(),
                proptest::option::of(0u64..4_000_000_000_000_000_000),
            )
                .prop_map(|(energized, nanos)| ChannelState {
                    energized,
                    changed_at: nanos
                        .map(|n| SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(n)),
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever was saved loads back exactly, to the nanosecond.
            #[test]
            fn any_states_round_trip(states in proptest::collection::vec(channel_state(), 1..32)) {
                let dir = tempfile::tempdir().expect("tempdir");
                let file = StateFile::in_dir(dir.path());
                file.save(&states).expect("save");
                match file.load(states.len()).expect("load") {
                    Loaded::Found(back) => prop_assert_eq!(back, states),
                    other => prop_assert!(false, "expected Found, got {:?}", other),
                }
            }

            /// No byte string makes the loader fail or panic: it parses, or
            /// it is set aside.
            #[test]
            fn any_garbage_is_set_aside(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let dir = tempfile::tempdir().expect("tempdir");
                let file = StateFile::in_dir(dir.path());
                std::fs::write(file.path(), &bytes).expect("write");
                let loaded = file.load(8);
                let handled = matches!(loaded, Ok(Loaded::Found(_)) | Ok(Loaded::SetAside { .. }));
                prop_assert!(handled, "{:?}", loaded);
            }
        }
    }
}
