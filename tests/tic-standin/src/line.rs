//! The line: a pseudo-terminal behind a stable link, and the thread that
//! writes frames into it at the line's pace.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use delestage_tic::frame_for;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::termios::{self, SetArg};

use crate::Shared;

/// Bytes go out every this often, as many as the line speed allows.
const TICK: Duration = Duration::from_millis(50);

/// One plugged adapter: the pty's master (we write) and slave (kept open,
/// to read the speed the reader set, and so the line never hangs up
/// between two readers).
pub(crate) struct Line {
    link: PathBuf,
    master: std::fs::File,
    slave: OwnedFd,
}

impl Line {
    /// A new pty, raw (no line discipline: CR stays CR), behind `link`.
    pub(crate) fn plug(link: &Path) -> std::io::Result<Self> {
        let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
        let mut raw = termios::tcgetattr(&pty.slave).map_err(std::io::Error::from)?;
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&pty.slave, SetArg::TCSANOW, &raw).map_err(std::io::Error::from)?;
        // Bytes nobody reads are lost, as on a serial line: the writer
        // never blocks on a reader that is not there.
        let flags = fcntl(&pty.master, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        fcntl(
            &pty.master,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )
        .map_err(std::io::Error::from)?;
        let slave_path = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
        ))?;
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(&slave_path, link)?;
        Ok(Self {
            link: link.to_owned(),
            master: std::fs::File::from(pty.master),
            slave: pty.slave,
        })
    }

    /// The speed the reader set on its end. Read with TCGETS2: a reader
    /// may set its speed as a number (BOTHER, as the `serialport` crate
    /// does), which the classic termios calls cannot show.
    fn reader_baud(&self) -> Option<u32> {
        let mut t = std::mem::MaybeUninit::<libc::termios2>::zeroed();
        // SAFETY: TCGETS2 fills a termios2 through the pointer, on an fd
        // we own.
        let rc = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&self.slave),
                libc::TCGETS2,
                t.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: filled by the successful ioctl above (zeroed before).
        let t = unsafe { t.assume_init() };
        Some(t.c_ospeed)
    }

    fn unplug(self) {
        let _ = std::fs::remove_file(&self.link);
        // Dropping both ends: the reader's next read fails (EIO).
    }
}

/// Writes frames until the stand-in stops.
pub(crate) fn run(line: Line, shared: &Shared) {
    let mut line = Some(line);
    let mut pending: Vec<u8> = Vec::new();
    let mut sent_at = 0usize;
    let mut seed: u32 = 0x2545_F491;
    let mut next_tick = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
        next_tick += TICK;
        let knobs = shared.knobs().clone();
        if !knobs.plugged {
            if let Some(l) = line.take() {
                l.unplug();
            }
            pending.clear();
            continue;
        }
        if line.is_none() {
            line = Line::plug(&shared.config.link).ok();
        }
        let Some(current) = line.as_mut() else {
            continue;
        };
        if sent_at >= pending.len() {
            pending = next_frame(shared, &mut seed);
            sent_at = 0;
        }
        // 10 bits a character (7E1 + start + stop).
        let per_tick = (knobs.mode.baud() / 10 / (1000 / TICK.as_millis() as u32)).max(1) as usize;
        let end = (sent_at + per_tick).min(pending.len());
        let mut chunk = pending[sent_at..end].to_vec();
        sent_at = end;
        if knobs.silent {
            continue;
        }
        // A reader at another speed than the meter's reads garbage.
        if current.reader_baud() != Some(knobs.mode.baud()) {
            for b in &mut chunk {
                *b = random(&mut seed) as u8 | 0x80;
            }
        }
        let _ = current.master.write(&chunk);
    }
    if let Some(l) = line.take() {
        l.unplug();
    }
}

/// The bytes of the next frame, with the faults asked for.
fn next_frame(shared: &Shared, seed: &mut u32) -> Vec<u8> {
    let state = shared.meter_state();
    let mut k = shared.knobs();
    let mut bytes = frame_for(k.mode, &state);
    if k.bad_frames > 0 {
        k.bad_frames -= 1;
        // The checksum of the group before the last: one byte changed.
        if let Some(i) = bytes.iter().rposition(|b| *b == b'\r')
            && let Some(j) = bytes[..i].iter().rposition(|b| *b == b'\r')
        {
            bytes[j - 1] = if bytes[j - 1] == b'A' { b'B' } else { b'A' };
        }
    }
    if k.cut_next {
        k.cut_next = false;
        bytes.truncate(bytes.len() / 2);
    }
    if k.noise {
        let mut noise: Vec<u8> = (0..24).map(|_| random(seed) as u8 & 0x7F).collect();
        // Noise that looks like a frame's start is the worst kind.
        noise[3] = delestage_tic::frame::STX;
        noise.extend_from_slice(&bytes);
        bytes = noise;
    }
    shared.frames_sent.fetch_add(1, Ordering::Relaxed);
    bytes
}

/// xorshift: noise needs no quality.
fn random(seed: &mut u32) -> u32 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    *seed
}
