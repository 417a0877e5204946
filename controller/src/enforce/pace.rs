//! How often a load's override may be set: once per 10 s per load, whatever
//! the source (gRPC, the dashboard, Home Assistant). With the minimum on and
//! off times that overrides now wait for, it keeps a burst of commands (a
//! stuck button, a script, someone who can publish on the broker) from
//! turning into relay cycles; the relay-service's wear guard stays the last
//! line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::Error;

/// One override per load per this long.
pub(crate) const OVERRIDE_EVERY: Duration = Duration::from_secs(10);

/// When each load's override was last set.
#[derive(Debug, Default)]
pub(crate) struct OverridePace {
    last: Mutex<HashMap<String, Instant>>,
}

impl OverridePace {
    /// Takes the slot for setting `load`'s override at `now`, or says when
    /// the next one is allowed.
    pub(crate) fn allow(&self, load: &str, now: Instant) -> Result<(), Error> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = last.get(load) {
            let next = *at + OVERRIDE_EVERY;
            if now < next {
                let wait = next - now;
                return Err(Error::TooSoon(format!(
                    "{load}: its override was set {} s ago; one change per {} s per load (the next in {} s)",
                    (now - *at).as_secs(),
                    OVERRIDE_EVERY.as_secs(),
                    wait.as_secs().max(1)
                )));
            }
        }
        last.insert(load.to_owned(), now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_override_per_load_per_ten_seconds() {
        let pace = OverridePace::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        pace.allow("heat-pump", t0).expect("the first");
        let err = pace.allow("heat-pump", t0 + s(3)).expect_err("3 s later");
        let msg = err.to_string();
        assert!(
            msg.contains("one change per 10 s") && msg.contains("the next in 7 s"),
            "{msg}"
        );
        pace.allow("water-heater", t0 + s(3)).expect("another load");
        pace.allow("heat-pump", t0 + s(10)).expect("10 s later");
        assert!(
            pace.allow("heat-pump", t0 + s(19)).is_err(),
            "counted from the last allowed"
        );
    }
}
