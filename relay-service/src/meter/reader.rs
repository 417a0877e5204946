//! Reading the meter's serial port, on a thread of its own (a serial port
//! is blocking I/O): open at the mode's speed (7E1), cut the bytes into
//! frames, publish each valid reading; reopen with the shared back-off when
//! the device goes away (a USB adapter unplugged), and in `auto` try the
//! other speed when one yields no valid frame.
//!
//! Each kind of failure is said once (a warning), and the recovery once (an
//! info line); the meter id is personal data and is only ever logged at
//! debug level.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use delestage_runtime::backoff::Backoff;
use delestage_tic::{FrameSplitter, Mode, Reading, Split, parse_frame};
use jiff::Timestamp;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{MeterSettings, MeterView, STALE_AFTER};

/// How long one read waits: the loop sees a shutdown this often.
const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a speed is given to yield its first valid frame before `auto`
/// tries the other: a frame comes every 1–2 s, and one historic frame takes
/// about 2 s to send at 1200 baud.
const PROBE_WINDOW: Duration = Duration::from_secs(5);
/// Reopening a device that went away: soon (a replugged adapter is back
/// within seconds), never hammering.
const REOPEN: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(2));

/// Why no valid frame comes: one warning per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    /// The device is not there (unplugged, or another name).
    Missing,
    /// It is there and cannot be opened.
    Open(String),
    /// It went away while being read.
    Lost(String),
    /// Open, and nothing comes.
    Silent(Mode),
    /// Bytes come, and no frame passes its checksums: noise, or the wrong
    /// speed.
    Garbled(Mode),
}

impl Problem {
    fn kind(&self) -> u8 {
        match self {
            Problem::Missing => 0,
            Problem::Open(_) => 1,
            Problem::Lost(_) => 2,
            Problem::Silent(_) => 3,
            Problem::Garbled(_) => 4,
        }
    }

    fn describe(&self, path: &Path) -> String {
        let path = path.display();
        match self {
            Problem::Missing => {
                format!(
                    "{path} is not there: is the TIC adapter plugged in? (see the udev rule in docs/relay-service.md)"
                )
            }
            Problem::Open(e) => format!("cannot open {path}: {e}"),
            Problem::Lost(e) => format!("{path} went away: {e}"),
            Problem::Silent(mode) => format!(
                "nothing on {path} at {} baud ({mode}): is the adapter wired to the meter's I1/I2 terminals?",
                mode.baud()
            ),
            Problem::Garbled(mode) => format!(
                "bytes on {path} at {} baud ({mode}), but no frame passes its checksums: noise, or the meter is in the other mode (--meter-mode)",
                mode.baud()
            ),
        }
    }
}

/// How a session on an open port ended.
enum End {
    Closing,
    Lost(Problem),
    NoValidFrame(Problem),
}

/// Says what goes wrong once per kind, and the recovery once.
struct Reporter<'a> {
    path: &'a Path,
    problem: Option<Problem>,
    ever_read: bool,
    view: &'a watch::Sender<MeterView>,
}

impl Reporter<'_> {
    fn failed(&mut self, problem: Problem) {
        let text = problem.describe(self.path);
        if self.problem.as_ref().map(Problem::kind) != Some(problem.kind()) {
            tracing::warn!(meter = %self.path.display(), "{text}");
        } else {
            tracing::debug!(meter = %self.path.display(), "{text}");
        }
        self.view.send_modify(|v| v.problem = Some(text));
        self.problem = Some(problem);
    }

    fn read(&mut self, reading: &Reading) {
        if self.problem.take().is_some() || !self.ever_read {
            tracing::info!(
                meter = %self.path.display(),
                mode = %reading.mode,
                apparent_power_va = reading.apparent_power_va,
                subscribed_va = reading.subscribed_va,
                "reading the Linky meter"
            );
            tracing::debug!(meter_id = %reading.meter_id, "meter id");
            self.ever_read = true;
        }
    }
}

/// Reads the meter until `closing`. Blocking: run it on a thread of its own.
pub(crate) fn run(
    settings: MeterSettings,
    view: watch::Sender<MeterView>,
    closing: CancellationToken,
) {
    view.send_modify(|v| v.since = Some(Timestamp::now()));
    let mut reporter = Reporter {
        path: &settings.path,
        problem: None,
        ever_read: false,
        view: &view,
    };
    let candidates = settings.mode.candidates();
    let mut next = 0usize;
    // The mode that last gave valid frames: kept across a replug.
    let mut locked: Option<Mode> = None;
    let mut retry = REOPEN.start();
    while !closing.is_cancelled() {
        let mode = locked.unwrap_or(candidates[next % candidates.len()]);
        let port = match open(&settings.path, mode) {
            Ok(port) => port,
            Err(problem) => {
                reporter.failed(problem);
                wait(retry.failed(), &closing);
                continue;
            }
        };
        let mut worked = false;
        let end = session(
            port,
            mode,
            locked.is_some(),
            &mut reporter,
            &view,
            &closing,
            &mut worked,
        );
        if worked {
            retry.succeeded();
            locked = Some(mode);
        }
        match end {
            End::Closing => return,
            End::Lost(problem) => {
                reporter.failed(problem);
                wait(retry.failed(), &closing);
            }
            End::NoValidFrame(problem) => {
                reporter.failed(problem);
                // The next speed after this one.
                locked = None;
                next = candidates.iter().position(|m| *m == mode).unwrap_or(0) + 1;
            }
        }
    }
}

fn open(path: &Path, mode: Mode) -> Result<Box<dyn serialport::SerialPort>, Problem> {
    if !path.exists() {
        return Err(Problem::Missing);
    }
    serialport::new(path.to_string_lossy(), mode.baud())
        .data_bits(serialport::DataBits::Seven)
        .parity(serialport::Parity::Even)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(READ_TIMEOUT)
        .open()
        .map_err(|e| match e.kind() {
            serialport::ErrorKind::NoDevice
            | serialport::ErrorKind::Io(std::io::ErrorKind::NotFound) => Problem::Missing,
            _ => Problem::Open(e.to_string()),
        })
}

/// Reads an open port until it goes away, stops giving valid frames, or
/// `closing`. `known_good`: this speed gave valid frames before (a replug):
/// it gets the longer window before the other speed is tried. `worked`
/// turns true at the first valid frame.
fn session(
    mut port: Box<dyn serialport::SerialPort>,
    mode: Mode,
    known_good: bool,
    reporter: &mut Reporter<'_>,
    view: &watch::Sender<MeterView>,
    closing: &CancellationToken,
    worked: &mut bool,
) -> End {
    let mut splitter = FrameSplitter::new();
    let mut buf = [0u8; 512];
    let opened = Instant::now();
    let mut last_valid: Option<Instant> = None;
    let mut bytes_seen = false;
    loop {
        if closing.is_cancelled() {
            return End::Closing;
        }
        match port.read(&mut buf) {
            // A pseudo-terminal whose other end closed.
            Ok(0) => return End::Lost(Problem::Lost("end of file".to_owned())),
            Ok(n) => {
                bytes_seen = true;
                for split in splitter.push(&buf[..n]) {
                    if let Some(reading) = frame(split, view) {
                        last_valid = Some(Instant::now());
                        *worked = true;
                        reporter.read(&reading);
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return End::Lost(Problem::Lost(e.to_string())),
        }
        let window = if last_valid.is_some() || known_good {
            STALE_AFTER
        } else {
            PROBE_WINDOW
        };
        if last_valid.unwrap_or(opened).elapsed() > window {
            return End::NoValidFrame(if bytes_seen {
                Problem::Garbled(mode)
            } else {
                Problem::Silent(mode)
            });
        }
    }
}

/// Counts a frame (or a cut one), and publishes it if it is a reading.
fn frame(split: Split, view: &watch::Sender<MeterView>) -> Option<Reading> {
    let reading = match split {
        Split::Frame(body) => Reading::from_frame(&parse_frame(&body)).ok(),
        Split::Cut => None,
    };
    let at = Timestamp::now();
    view.send_modify(|v| match &reading {
        Some(r) => {
            v.frames_ok += 1;
            v.latest = Some((at, r.clone()));
            v.problem = None;
        }
        None => v.frames_bad += 1,
    });
    match &reading {
        Some(r) => {
            metrics::counter!("meter_frames_total", "result" => "ok").increment(1);
            metrics::gauge!("meter_apparent_power_va").set(f64::from(r.apparent_power_va));
            metrics::gauge!("meter_subscribed_va").set(f64::from(r.subscribed_va));
        }
        None => metrics::counter!("meter_frames_total", "result" => "bad").increment(1),
    }
    reading
}

/// Sleeps `delay`, or less if `closing`.
fn wait(delay: Duration, closing: &CancellationToken) {
    let until = Instant::now() + delay;
    while !closing.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(READ_TIMEOUT));
    }
}
