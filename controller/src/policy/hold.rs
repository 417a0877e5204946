//! The minimum on and off times: until when a load must stay as it is.

use jiff::Timestamp;

use super::{LoadState, Reason, add};
use crate::model::Load;

/// When a load in `state` may change, if not yet at `t`: its minimum on
/// (or off) time since the controller last switched it, and the reason it
/// holds until then.
pub(super) fn min_hold(
    load: &Load,
    state: &LoadState,
    t: Timestamp,
) -> Option<(Timestamp, Reason)> {
    let (min, hold) = if state.powered {
        (load.min_on, Reason::MinOnHold)
    } else {
        (load.min_off, Reason::MinOffHold)
    };
    let allowed_at = add(state.since?, min);
    (allowed_at > t).then_some((allowed_at, hold))
}
