//! The plan a relay box carries for when its controller is gone: for each
//! channel the controller drives, the states it planned over time, and the
//! state to go to once that schedule has ended. Pure: what a channel should
//! be at `now`, and when that next changes. Kept on disk (`hold-plan.json`,
//! written atomically), so a box that restarts while the controller is away
//! still knows it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use delestage_runtime::files::{self, Loaded};
use serde::{Deserialize, Serialize};

/// One channel's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChannelPlan {
    pub(crate) channel: u32,
    /// (from, energized), sorted by `from`. The last `from` ends the
    /// schedule.
    pub(crate) schedule: Vec<(SystemTime, bool)>,
    pub(crate) safe_energized: bool,
}

impl ChannelPlan {
    /// The state for `now`: the last step that has begun; once the schedule
    /// has ended (its last step has begun), `safe_energized`; before the
    /// first step, nothing to say.
    pub(crate) fn state_at(&self, now: SystemTime) -> Option<bool> {
        let begun = self
            .schedule
            .iter()
            .filter(|(from, _)| *from <= now)
            .count();
        match begun {
            0 => None,
            n if n == self.schedule.len() => Some(self.safe_energized),
            n => Some(self.schedule[n - 1].1),
        }
    }

    /// When the state for `now` next changes, if it does.
    pub(crate) fn next_step(&self, now: SystemTime) -> Option<SystemTime> {
        self.schedule
            .iter()
            .map(|(from, _)| *from)
            .find(|from| *from > now)
    }
}

/// The whole plan of a box.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldPlan {
    pub(crate) channels: Vec<ChannelPlan>,
}

impl HeldPlan {
    /// What every planned channel should be at `now` (channels the plan
    /// has nothing to say about yet are left out).
    pub(crate) fn states_at(&self, now: SystemTime) -> Vec<(u32, bool)> {
        self.channels
            .iter()
            .filter_map(|c| c.state_at(now).map(|e| (c.channel, e)))
            .collect()
    }

    /// How long until some channel's state changes; `None`: never.
    pub(crate) fn until_next_step(&self, now: SystemTime) -> Option<Duration> {
        self.channels
            .iter()
            .filter_map(|c| c.next_step(now))
            .min()
            .map(|at| at.duration_since(now).unwrap_or_default())
    }

    pub(crate) fn is_planned(&self, channel: u32) -> bool {
        self.channels.iter().any(|c| c.channel == channel)
    }

    /// The same steps, but for when each schedule's first step began: the
    /// controller's plan starts "now" at every renewal, and the file need
    /// not be rewritten each second for that.
    pub(crate) fn same_steps(&self, other: &HeldPlan) -> bool {
        let key = |p: &HeldPlan| -> Vec<(u32, bool, Vec<bool>, Vec<SystemTime>)> {
            p.channels
                .iter()
                .map(|c| {
                    (
                        c.channel,
                        c.safe_energized,
                        c.schedule.iter().map(|s| s.1).collect(),
                        c.schedule.iter().skip(1).map(|s| s.0).collect(),
                    )
                })
                .collect()
        };
        key(self) == key(other)
    }
}

/// Where the plan is kept.
#[derive(Debug, Clone)]
pub(crate) struct PlanFile {
    path: PathBuf,
}

impl PlanFile {
    pub(crate) const NAME: &'static str = "hold-plan.json";

    pub(crate) fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(Self::NAME),
        }
    }

    /// The last plan saved; none if there is none, or if it cannot be used
    /// (set aside and reported: a box without a plan falls back to its safe
    /// states).
    pub(crate) fn load(&self) -> HeldPlan {
        let parse = |bytes: &[u8]| serde_json::from_slice(bytes).map_err(|e| e.to_string());
        match files::load_state_file(&self.path, files::STATE_FILE_LIMIT, parse) {
            Ok(Loaded::Found(plan)) => plan,
            Ok(Loaded::Missing) => HeldPlan::default(),
            Ok(Loaded::SetAside { set_aside, reason }) => {
                tracing::error!(path = %self.path.display(), set_aside = %set_aside.display(), %reason, "unusable held plan kept aside; the safe states apply");
                HeldPlan::default()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the held plan; the safe states apply");
                HeldPlan::default()
            }
        }
    }

    pub(crate) fn save(&self, plan: &HeldPlan) -> Result<(), String> {
        let json = serde_json::to_vec(plan).map_err(|e| e.to_string())?;
        delestage_runtime::files::write_atomic(&self.path, &json).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn plan() -> ChannelPlan {
        ChannelPlan {
            channel: 3,
            schedule: vec![(at(100), false), (at(200), true), (at(300), true)],
            safe_energized: false,
        }
    }

    #[test]
    fn a_channel_follows_its_schedule_then_its_safe_state() {
        let p = plan();
        assert_eq!(p.state_at(at(50)), None);
        assert_eq!(p.state_at(at(100)), Some(false));
        assert_eq!(p.state_at(at(250)), Some(true));
        // The last step ends the schedule: the safe state from then on.
        assert_eq!(p.state_at(at(300)), Some(false));
        assert_eq!(p.state_at(at(10_000)), Some(false));
        assert_eq!(p.next_step(at(150)), Some(at(200)));
        assert_eq!(p.next_step(at(300)), None);
    }

    #[test]
    fn the_plan_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = PlanFile::new(dir.path());
        assert_eq!(file.load(), HeldPlan::default());
        let held = HeldPlan {
            channels: vec![plan()],
        };
        file.save(&held).expect("save");
        assert_eq!(PlanFile::new(dir.path()).load(), held);
        let now = at(150);
        assert_eq!(held.states_at(now), vec![(3, false)]);
        assert_eq!(held.until_next_step(now), Some(Duration::from_secs(50)));
    }
}
