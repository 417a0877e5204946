//! What this library holds now: counts of what it has allocated and not
//! freed yet (contexts, devices, handles — each with a connection and its
//! reader thread —, transfers, configuration descriptors), for the leak
//! test, which reads them with `dlsym`.

use std::sync::atomic::{AtomicI64, Ordering};

pub(super) static CONTEXTS: AtomicI64 = AtomicI64::new(0);
pub(super) static DEVICES: AtomicI64 = AtomicI64::new(0);
pub(super) static HANDLES: AtomicI64 = AtomicI64::new(0);
pub(super) static TRANSFERS: AtomicI64 = AtomicI64::new(0);
pub(super) static CONFIGS: AtomicI64 = AtomicI64::new(0);

pub(super) fn up(counter: &AtomicI64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn down(counter: &AtomicI64) {
    counter.fetch_sub(1, Ordering::Relaxed);
}

fn all() -> [i64; 5] {
    [&CONTEXTS, &DEVICES, &HANDLES, &TRANSFERS, &CONFIGS].map(|c| c.load(Ordering::Relaxed))
}

/// Not libusb: writes up to `n` counts to `out` (contexts, devices,
/// handles, transfers, configuration descriptors) and returns how many it
/// wrote.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn delestage_virtual_usb_live(out: *mut i64, n: usize) -> usize {
    if out.is_null() {
        return 0;
    }
    let all = all();
    let n = n.min(all.len());
    // SAFETY: the caller's buffer of `n` counts.
    unsafe { std::ptr::copy_nonoverlapping(all.as_ptr(), out, n) };
    n
}
