//! The stand-in's own controls, for tests: unplug and replug the board,
//! read a relay, make it a 1017_2, freeze the host's failsafe resets. They
//! are not part of libphidget22.

use super::*;

/// Simulates pulling the USB cable: relays drop out, open channels detach.
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_unplug() {
    let pending: Vec<Pending> = {
        let mut w = world();
        w.plugged = false;
        let handles: Vec<usize> = w.handles.keys().copied().collect();
        let pending = handles.into_iter().filter_map(|h| w.detach(h)).collect();
        w.relays = [false; CHANNELS];
        pending
    };
    dispatch(pending);
}

/// Simulates plugging the board back in: open channels attach, relays off.
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_plug() {
    let pending: Vec<Pending> = {
        let mut w = world();
        w.plugged = true;
        w.relays = [false; CHANNELS];
        let mut handles: Vec<(i32, usize)> = w.handles.iter().map(|(h, c)| (c.index, *h)).collect();
        handles.sort();
        handles
            .into_iter()
            .filter_map(|(_, h)| w.try_attach(h))
            .collect()
    };
    dispatch(pending);
}

/// The physical state of relay `index`: 1 energised, 0 not, -1 no such relay.
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_relay(index: c_int) -> c_int {
    usize::try_from(index)
        .ok()
        .and_then(|i| world().relays.get(i).copied())
        .map_or(-1, c_int::from)
}

/// The simulated board's serial number.
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_serial() -> i32 {
    world().serial
}

/// Makes the board a 1017_2 (failsafe supported) or an older 1017.
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_set_failsafe(supported: c_int) {
    world().failsafe_supported = supported != 0;
}

/// Drops (1) or delivers (0) every resetFailsafe: a host that stopped
/// talking to the board.
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_freeze_resets(frozen: c_int) {
    world().resets_frozen = frozen != 0;
}

/// Whether channel `index`'s failsafe has tripped (1), and -1 if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_failsafe_tripped(index: c_int) -> c_int {
    usize::try_from(index)
        .ok()
        .and_then(|i| world().tripped.get(i).copied())
        .map_or(-1, c_int::from)
}

/// The failsafe time armed on channel `index`, in ms (0 if none).
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_failsafe_ms(index: c_int) -> c_int {
    usize::try_from(index)
        .ok()
        .and_then(|i| world().failsafe.get(i).copied().flatten())
        .map_or(0, |(period, _)| period.as_millis() as c_int)
}

/// The longest gap between two feeds (enable or reset) of channel `index`'s
/// failsafe since it was armed, in ms; -1 if out of range.
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_longest_feed_gap_ms(index: c_int) -> c_int {
    usize::try_from(index)
        .ok()
        .and_then(|i| world().longest_gap.get(i).copied())
        .map_or(-1, |gap| gap.as_millis() as c_int)
}

/// Makes the board answer another device id (a 1018 is 6, a REL1000 81).
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_set_device_id(id: c_int) {
    world().device_id = id;
}

/// Plugs a second 1017 with this serial in as well (0: unplugs it).
#[unsafe(no_mangle)]
pub extern "C" fn phidget_standin_set_second_board(serial: i32) {
    let pending: Vec<Pending> = {
        let mut w = world();
        if serial == 0 {
            w.second_serial = None;
            let handles: Vec<usize> = w
                .handles
                .iter()
                .filter(|(_, c)| c.on_second.is_some())
                .map(|(h, _)| *h)
                .collect();
            handles.into_iter().filter_map(|h| w.detach(h)).collect()
        } else {
            w.second_serial = Some(serial);
            Vec::new()
        }
    };
    dispatch(pending);
}
