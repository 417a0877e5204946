//! The board process: one per plugged virtual board, started by the library
//! side at the first enumeration that finds the board in `DIR/devices`, and
//! gone when the board is unplugged (its line removed, or the directory
//! gone).
//!
//! It is a process of its own because a board is hardware: its relays stay
//! as they are when the program that drove it crashes, and its failsafe
//! keeps time while that program is frozen (SIGSTOP) — which a board living
//! inside that program could not do.
//!
//! One thread, one `poll` loop: connections from programs (each
//! `libusb_open` is one), the failsafe deadlines, the 1017_1's input reports
//! every 20 ms, and a look at `DIR/devices` and `DIR/SERIAL.fault` every
//! 50 ms.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::control::{ControlDir, Fault, Model, Plugged};
use crate::firmware::{Firmware, Setup, TRIP_PACKET};
use crate::seqpacket;
use crate::wire::{self, ToBoard, ToHost};

/// How often the 1017_1 sends an input report (the library detaches after
/// about 0.5 s without one).
const REPORT_EVERY: Duration = Duration::from_millis(20);
/// How often the board looks at `devices` and at its fault file.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Starts the board process in the background and returns once it listens
/// (or once another process is found to be that board already). Runs in the
/// launcher: forks, and the child becomes the board.
pub fn launch(dir: ControlDir, board: Plugged) -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds that we own from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fds from pipe2.
    let (ready_r, ready_w) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the launcher is single-threaded here, so the child may run
    // ordinary code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(ready_r);
            // Its own session: a signal to the driving program's process
            // group (a terminal's ^C, a test's SIGSTOP) does not reach it.
            // SAFETY: plain syscall.
            unsafe { libc::setsid() };
            let code = match become_board(&dir, board, ready_w) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = writeln!(io::stderr(), "virtual-1017 board {}: {e}", board.serial);
                    1
                }
            };
            std::process::exit(code);
        }
        _ => {
            drop(ready_w);
            let mut byte = [0u8; 1];
            // SAFETY: reading one byte into a valid buffer.
            let n = unsafe { libc::read(ready_r.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
            if n == 1 {
                Ok(())
            } else {
                Err(io::Error::other(
                    "the board process did not start (see its log)",
                ))
            }
        }
    }
}

/// In the forked child: takes the board's lock (one process per board),
/// listens, says it is ready, and serves until unplugged.
fn become_board(dir: &ControlDir, board: Plugged, ready: OwnedFd) -> io::Result<()> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.lock_file(board.serial))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
        // Another launcher won the race: that process is the board.
        say_ready(&ready);
        return Ok(());
    }
    let socket = dir.socket(board.serial);
    // A board process that died leaves its socket behind; we hold the lock.
    let _ = std::fs::remove_file(&socket);
    let listener = seqpacket::listen(&socket)?;
    let identity = file_identity(&socket)?;
    redirect_output(dir, board.serial);
    let mut process = BoardProcess::new(dir.clone(), board, listener, identity);
    process.write_state();
    say_ready(&ready);
    drop(ready);
    process.run();
    let _ = std::fs::remove_file(&socket);
    drop(lock);
    Ok(())
}

/// A file's (device, inode): whether a path still names the file we made.
fn file_identity(path: &std::path::Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

fn say_ready(ready: &OwnedFd) {
    // SAFETY: writing one byte from a valid buffer.
    unsafe { libc::write(ready.as_raw_fd(), b"r".as_ptr().cast(), 1) };
}

/// Standard input and output to /dev/null, errors to `DIR/SERIAL.log`: the
/// board outlives the terminal that started the program.
fn redirect_output(dir: &ControlDir, serial: u32) {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log_file(serial));
    // SAFETY: dup2 onto the standard fds, from fds we own.
    unsafe {
        if let Ok(null) = &null {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
        if let Ok(log) = &log {
            libc::dup2(log.as_raw_fd(), 2);
        }
    }
}

struct Connection {
    fd: OwnedFd,
}

struct BoardProcess {
    dir: ControlDir,
    listener: OwnedFd,
    /// Our socket file's identity: if the directory is removed and made
    /// again, the path no longer names it, and this board is gone.
    socket: (u64, u64),
    connections: Vec<Connection>,
    /// The connection that claimed the interface: the one that gets the
    /// input packets.
    claimed_by: Option<i32>,
    firmware: Firmware,
    /// Input packets waiting for a host to read them.
    reports: std::collections::VecDeque<Vec<u8>>,
    /// The longest gap between two commands to each armed channel, as last
    /// written to `DIR/SERIAL.failsafe-gaps`.
    gaps_written: [u64; crate::firmware::CHANNELS],
    fault: Fault,
    instance: u64,
    written: String,
}

impl BoardProcess {
    fn new(dir: ControlDir, board: Plugged, listener: OwnedFd, socket: (u64, u64)) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let fault = dir.fault(board.serial);
        Self {
            dir,
            listener,
            socket,
            connections: Vec::new(),
            claimed_by: None,
            firmware: Firmware::new(board),
            reports: std::collections::VecDeque::new(),
            gaps_written: [0; crate::firmware::CHANNELS],
            fault,
            instance: nanos ^ (u64::from(std::process::id()) << 32),
            written: String::new(),
        }
    }

    fn serial(&self) -> u32 {
        self.firmware.board.serial
    }

    fn run(&mut self) {
        let mut next_report = Instant::now();
        let mut next_look = Instant::now() + LOOK_EVERY;
        loop {
            let now = Instant::now();
            let mut wake = next_look;
            if self.firmware.board.model == Model::Hid1017_1 || self.fault == Fault::IoError {
                wake = wake.min(next_report);
            }
            if let Some(deadline) = self.firmware.next_deadline() {
                wake = wake.min(deadline);
            }
            self.wait(wake.saturating_duration_since(now));

            let now = Instant::now();
            for ch in self.firmware.expire(now) {
                eprintln!("channel {ch}: failsafe tripped, relay off");
                self.reports.push_back(vec![TRIP_PACKET, ch]);
            }
            self.flush_reports();
            if now >= next_report {
                next_report = now + REPORT_EVERY;
                match self.fault {
                    Fault::None if self.firmware.board.model == Model::Hid1017_1 => {
                        let data = self.firmware.input_report();
                        self.to_claimer(&ToHost::In {
                            endpoint: 0x81,
                            data,
                        });
                    }
                    Fault::IoError => self.to_claimer(&ToHost::InError),
                    _ => {}
                }
            }
            if now >= next_look {
                next_look = now + LOOK_EVERY;
                if !self.still_plugged() {
                    self.unplug();
                    return;
                }
                self.fault = self.dir.fault(self.serial());
            }
            self.write_state();
        }
    }

    /// Waits for traffic (or `timeout`), and serves it.
    fn wait(&mut self, timeout: Duration) {
        let mut fds: Vec<libc::pollfd> = std::iter::once(&self.listener)
            .chain(self.connections.iter().map(|c| &c.fd))
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = timeout.as_millis().min(1000) as libc::c_int;
        // SAFETY: fds is a valid array of its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            return;
        }
        if fds[0].revents != 0 {
            while let Ok(Some(fd)) = seqpacket::accept(&self.listener) {
                self.connections.push(Connection { fd });
            }
        }
        let ready: Vec<i32> = fds[1..]
            .iter()
            .filter(|p| p.revents != 0)
            .map(|p| p.fd)
            .collect();
        for fd in ready {
            self.serve(fd);
        }
    }

    /// Reads every message waiting on one connection.
    fn serve(&mut self, fd: i32) {
        loop {
            match seqpacket::recv(fd) {
                Ok(Some(message)) => match ToBoard::decode(&message) {
                    Some(request) => self.answer(fd, request),
                    None => eprintln!("undecodable message {message:02x?}"),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Ok(None) | Err(_) => {
                    self.connections.retain(|c| c.fd.as_raw_fd() != fd);
                    if self.claimed_by == Some(fd) {
                        self.claimed_by = None;
                    }
                    return;
                }
            }
        }
    }

    fn answer(&mut self, fd: i32, request: ToBoard) {
        // A fault file takes effect at the next transfer, not the next look.
        self.fault = self.dir.fault(self.serial());
        let seq = request.seq().unwrap_or(0);
        let reply = |status: i32, data: Vec<u8>| ToHost::Reply { seq, status, data };
        let answer = match request {
            // What the host's USB stack knows without asking the board.
            ToBoard::Hello => ToHost::Hello {
                instance: self.instance,
            },
            ToBoard::Claim { .. } => match self.claimed_by {
                Some(other) if other != fd => reply(wire::LIBUSB_ERROR_BUSY, Vec::new()),
                _ => {
                    self.claimed_by = Some(fd);
                    reply(wire::LIBUSB_SUCCESS, Vec::new())
                }
            },
            ToBoard::Release { .. } => {
                if self.claimed_by == Some(fd) {
                    self.claimed_by = None;
                }
                reply(wire::LIBUSB_SUCCESS, Vec::new())
            }
            // Transfers: the board itself.
            _ if self.fault == Fault::Stall => return,
            _ if self.fault == Fault::IoError => reply(wire::LIBUSB_ERROR_IO, Vec::new()),
            ToBoard::Control { setup, data, .. } => self.control(setup, &data, reply),
            ToBoard::InterruptOut { endpoint, data, .. } => {
                match self.firmware.output_report(endpoint, &data) {
                    Ok(()) => reply(data.len() as i32, Vec::new()),
                    Err(stall) => {
                        eprintln!("STALL: {}", stall.0);
                        reply(wire::LIBUSB_ERROR_PIPE, Vec::new())
                    }
                }
            }
        };
        // The relays as they are now, before the host hears the answer:
        // whoever waits for the answer then reads the file that follows it.
        self.write_state();
        let _ = seqpacket::send(fd, &answer.encode());
    }

    fn control(
        &mut self,
        setup: Setup,
        data: &[u8],
        reply: impl Fn(i32, Vec<u8>) -> ToHost,
    ) -> ToHost {
        match self.firmware.control(setup, data, Instant::now()) {
            Ok(answer) if setup.request_type & 0x80 != 0 => reply(answer.len() as i32, answer),
            Ok(_) => reply(data.len() as i32, Vec::new()),
            Err(stall) => {
                eprintln!("STALL: {}", stall.0);
                reply(wire::LIBUSB_ERROR_PIPE, Vec::new())
            }
        }
    }

    /// Sends the queued input packets (trip reports) when a host reads the
    /// board: like a real endpoint buffer, they wait while the board is
    /// stalled or nobody has claimed it.
    fn flush_reports(&mut self) {
        if self.fault != Fault::None || self.claimed_by.is_none() {
            return;
        }
        while let Some(data) = self.reports.pop_front() {
            self.to_claimer(&ToHost::In {
                endpoint: 0x81,
                data,
            });
        }
    }

    fn to_claimer(&self, message: &ToHost) {
        if let Some(fd) = self.claimed_by {
            let _ = seqpacket::send(fd, &message.encode());
        }
    }

    /// The board is still listed in `devices`, as the same model and version.
    fn still_plugged(&self) -> bool {
        file_identity(&self.dir.socket(self.serial())).ok() == Some(self.socket)
            && self.dir.plugged().contains(&self.firmware.board)
    }

    /// Unplugged: the relays lose power, every program hears it.
    fn unplug(&mut self) {
        for c in &self.connections {
            let _ = seqpacket::send(c.fd.as_raw_fd(), &ToHost::Gone.encode());
        }
        self.connections.clear();
        let json = self.firmware.to_json(false);
        self.write_json(&json);
    }

    /// Rewrites `DIR/SERIAL.json` if anything changed (and the failsafe
    /// gaps, a diagnostic beside it).
    fn write_state(&mut self) {
        let json = self.firmware.to_json(true);
        if json != self.written {
            self.write_json(&json);
        }
        let gaps = self.firmware.longest_gaps_ms();
        if gaps != self.gaps_written {
            let text: Vec<String> = gaps.iter().map(u64::to_string).collect();
            let path = self.dir.gaps_file(self.serial());
            if std::fs::write(&path, text.join(" ") + "\n").is_ok() {
                self.gaps_written = gaps;
            }
        }
    }

    fn write_json(&mut self, json: &str) {
        let path = self.dir.state_file(self.serial());
        let tmp = self.dir.path().join(format!(".{}.json.tmp", self.serial()));
        // Atomic: readers see the old file or the new one, never half.
        let written = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => self.written = json.to_owned(),
            // The directory is going away: the next look unplugs the board.
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}
