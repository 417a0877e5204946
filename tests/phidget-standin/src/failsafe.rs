//! The 1017_2's failsafe: a watchdog per channel that `enableFailsafe`
//! arms (within the device's range) and `resetFailsafe` feeds; if it
//! starves, the relay turns off and the channel takes no command until it
//! is closed and reopened. The longest gap between two feeds is recorded.

use super::*;

/// The 1017 before the 1017_2 revision has no failsafe; a 1017_2 arms a
/// watchdog of `ms` (500..=30000) on the channel.
#[unsafe(no_mangle)]
pub extern "C" fn PhidgetDigitalOutput_enableFailsafe(handle: Handle, ms: u32) -> ReturnCode {
    let mut w = world();
    if !w.failsafe_supported {
        return EPHIDGET_UNSUPPORTED;
    }
    let index = match w.attached_index(handle) {
        Ok(index) => index,
        Err(rc) => return rc,
    };
    // A tripped channel takes nothing until it is closed and reopened.
    if w.tripped[index] {
        return EPHIDGET_FAILSAFE;
    }
    if !(MIN_FAILSAFE_MS..=MAX_FAILSAFE_MS).contains(&ms) {
        return EPHIDGET_INVALIDARG;
    }
    let period = Duration::from_millis(u64::from(ms));
    let now = Instant::now();
    w.failsafe[index] = Some((period, now + period));
    w.last_feed[index] = Some(now);
    w.longest_gap[index] = Duration::ZERO;
    drop(w);
    start_watchdog();
    EPHIDGET_OK
}

#[unsafe(no_mangle)]
pub extern "C" fn PhidgetDigitalOutput_resetFailsafe(handle: Handle) -> ReturnCode {
    let mut w = world();
    if !w.failsafe_supported {
        return EPHIDGET_UNSUPPORTED;
    }
    let index = match w.attached_index(handle) {
        Ok(index) => index,
        Err(rc) => return rc,
    };
    if w.tripped[index] {
        return EPHIDGET_FAILSAFE;
    }
    if w.resets_frozen {
        // The message never reaches the board.
        return EPHIDGET_OK;
    }
    match w.failsafe[index] {
        Some((period, _)) => {
            let now = Instant::now();
            w.failsafe[index] = Some((period, now + period));
            if let Some(last) = w.last_feed[index] {
                let gap = now.duration_since(last);
                w.longest_gap[index] = w.longest_gap[index].max(gap);
            }
            w.last_feed[index] = Some(now);
            EPHIDGET_OK
        }
        None => EPHIDGET_INVALIDARG,
    }
}

/// The failsafe range of a 1017_2; an older 1017 answers unsupported.
fn failsafe_limit(handle: Handle, value: *mut u32, limit: u32) -> ReturnCode {
    if value.is_null() {
        return EPHIDGET_INVALIDARG;
    }
    let w = world();
    if let Err(rc) = w.attached_index(handle) {
        return rc;
    }
    if !w.failsafe_supported {
        return EPHIDGET_UNSUPPORTED;
    }
    // SAFETY: checked non-null above.
    unsafe { *value = limit };
    EPHIDGET_OK
}

#[unsafe(no_mangle)]
pub extern "C" fn PhidgetDigitalOutput_getMinFailsafeTime(
    handle: Handle,
    ms: *mut u32,
) -> ReturnCode {
    failsafe_limit(handle, ms, MIN_FAILSAFE_MS)
}

#[unsafe(no_mangle)]
pub extern "C" fn PhidgetDigitalOutput_getMaxFailsafeTime(
    handle: Handle,
    ms: *mut u32,
) -> ReturnCode {
    failsafe_limit(handle, ms, MAX_FAILSAFE_MS)
}

/// The board's own watchdogs: a channel whose failsafe was not fed in
/// time turns off and trips.
fn start_watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let _ = std::thread::Builder::new()
            .name("phidget-standin-failsafe".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(Duration::from_millis(10));
                    let mut w = world();
                    let now = Instant::now();
                    for index in 0..CHANNELS {
                        if let Some((_, deadline)) = w.failsafe[index]
                            && !w.tripped[index]
                            && now >= deadline
                        {
                            w.relays[index] = false;
                            w.tripped[index] = true;
                        }
                    }
                }
            });
    });
}
