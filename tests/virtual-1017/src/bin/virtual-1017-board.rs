//! The virtual 1017's board process. Started by the virtual libusb when an
//! enumeration finds a board in `DIR/devices`:
//! `virtual-1017-board DIR MODEL SERIAL VERSION`. Returns once the board
//! listens (it runs on in the background until unplugged).

use delestage_virtual_1017::board;
use delestage_virtual_1017::control::{ControlDir, Model, Plugged};

fn main() {
    // Whatever the driving program left open without close-on-exec (its
    // sockets, its files) must not live on in the board process.
    // SAFETY: closes only fds of this fresh process above stderr.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [dir, model, serial, version] => Model::parse(model).and_then(|model| {
            Some((
                ControlDir::new(dir),
                Plugged {
                    model,
                    serial: serial.parse().ok()?,
                    version: version.parse().ok()?,
                },
            ))
        }),
        _ => None,
    };
    let Some((dir, plugged)) = parsed else {
        eprintln!("usage: virtual-1017-board DIR 1017_1|1017_2 SERIAL VERSION");
        std::process::exit(2);
    };
    if let Err(e) = board::launch(dir, plugged) {
        eprintln!("virtual-1017-board: {e}");
        std::process::exit(1);
    }
}
