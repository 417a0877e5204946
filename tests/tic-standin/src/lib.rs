//! A stand-in Linky meter: TIC frames on a pseudo-terminal, as a "TIC USB"
//! adapter would deliver them, for the tests and the demo.
//!
//! - The relay-service opens the pty's other end, through a stable link
//!   (`--meter /tmp/x/linky`), as it would open `/dev/ttyUSB0`.
//! - Frames are `delestage_tic`'s, with real checksums, sent at the mode's
//!   line speed (1200 or 9600 baud, 10 bits a character): a historic frame
//!   takes about 2 s, as on a real line.
//! - It models a house: a base load, plus each wired load's power while its
//!   relay powers it. It follows a relay-service's WatchRelays, so a cut
//!   shows in the next frame.
//! - The line speed is the reader's own (read from the pty's settings): a
//!   reader at the wrong speed gets garbage, as on a real line.
//! - On demand: noise between frames, bad checksums, a cut frame, a silent
//!   line, a colour change, the adapter unplugged and plugged back.

mod line;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use delestage_proto::relay::v1 as rpb;
use delestage_tic::{MeterState, Mode, TempoColor};
use tokio_stream::StreamExt;

/// One load on the meter: what it draws while its relay powers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire {
    pub channel: u32,
    pub watts: u32,
    /// Powered while the relay is at rest (normally-closed wiring).
    pub normally_closed: bool,
}

impl std::str::FromStr for Wire {
    type Err = String;

    /// `CHANNEL:WATTS` or `CHANNEL:WATTS:nc`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let channel = parts.next().and_then(|c| c.parse().ok());
        let watts = parts.next().and_then(|w| w.parse().ok());
        let normally_closed = match parts.next() {
            None | Some("no") => false,
            Some("nc") => true,
            Some(other) => return Err(format!("{other:?}: the wiring is `no` or `nc`")),
        };
        match (channel, watts, parts.next()) {
            (Some(channel), Some(watts), None) => Ok(Wire {
                channel,
                watts,
                normally_closed,
            }),
            _ => Err(format!(
                "{s:?}: a wire is CHANNEL:WATTS or CHANNEL:WATTS:nc"
            )),
        }
    }
}

/// What the stand-in is told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The link to the pty the reader opens.
    pub link: PathBuf,
    pub mode: Mode,
    pub meter_id: String,
    pub subscribed_va: u32,
    /// What the house draws with every wired load off.
    pub base_va: u32,
    pub wiring: Vec<Wire>,
    pub tempo_today: Option<TempoColor>,
    pub tempo_tomorrow: Option<TempoColor>,
}

impl Config {
    /// A historic Tempo meter, 9 kVA, 300 VA of base load, nothing wired.
    pub fn new(link: impl Into<PathBuf>) -> Self {
        Self {
            link: link.into(),
            mode: Mode::Historic,
            meter_id: "041876097523".to_owned(),
            subscribed_va: 9000,
            base_va: 300,
            wiring: Vec::new(),
            tempo_today: Some(TempoColor::Blue),
            tempo_tomorrow: None,
        }
    }
}

/// What can be changed while it runs.
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    pub mode: Mode,
    pub tempo_today: Option<TempoColor>,
    pub tempo_tomorrow: Option<TempoColor>,
    /// Relays energised, by channel.
    pub energized: Vec<u32>,
    pub noise: bool,
    pub silent: bool,
    /// The next N frames go out with a bad checksum.
    pub bad_frames: u32,
    /// The next frame stops in its middle.
    pub cut_next: bool,
    pub plugged: bool,
}

pub(crate) struct Shared {
    pub config: Config,
    pub knobs: Mutex<Knobs>,
    pub stop: AtomicBool,
    /// Frames sent since the start, for tests that wait on the next one.
    pub frames_sent: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub(crate) fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.knobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The meter's state now: the house's power from the relays.
    pub(crate) fn meter_state(&self) -> MeterState {
        let k = self.knobs();
        MeterState {
            meter_id: self.config.meter_id.clone(),
            apparent_power_va: power_va(&self.config, &k.energized),
            subscribed_va: self.config.subscribed_va,
            peak: true,
            tempo_today: k.tempo_today,
            tempo_tomorrow: k.tempo_tomorrow,
            phase_power_va: Vec::new(),
            injected_va: None,
        }
    }
}

/// The house's apparent power with these relays energised.
pub fn power_va(config: &Config, energized: &[u32]) -> u32 {
    config
        .wiring
        .iter()
        .filter(|w| energized.contains(&w.channel) != w.normally_closed)
        .map(|w| w.watts)
        .sum::<u32>()
        + config.base_va
}

/// A running stand-in meter. Stops (and removes its link) on drop.
pub struct TicStandin {
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl TicStandin {
    /// Creates the pty and its link, and starts sending frames. Returns
    /// once the link exists: a reader may open it at once.
    pub fn start(config: Config) -> std::io::Result<Self> {
        let knobs = Knobs {
            mode: config.mode,
            tempo_today: config.tempo_today,
            tempo_tomorrow: config.tempo_tomorrow,
            energized: Vec::new(),
            noise: false,
            silent: false,
            bad_frames: 0,
            cut_next: false,
            plugged: true,
        };
        let shared = Arc::new(Shared {
            config,
            knobs: Mutex::new(knobs),
            stop: AtomicBool::new(false),
            frames_sent: std::sync::atomic::AtomicU64::new(0),
        });
        let line = line::Line::plug(&shared.config.link)?;
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("tic-standin".to_owned())
                .spawn(move || line::run(line, &shared))?
        };
        Ok(Self {
            shared,
            writer: Some(writer),
            follower: None,
        })
    }

    /// Follows the relays of the relay-service at `endpoint`
    /// (`http://HOST:PORT`), reconnecting as needed. Needs a Tokio runtime.
    pub fn follow(&mut self, endpoint: String) {
        let shared = Arc::clone(&self.shared);
        self.follower = Some(tokio::spawn(follow(endpoint, shared)));
    }

    pub fn link(&self) -> &Path {
        &self.shared.config.link
    }

    /// Sets which relays are energised (without a relay-service).
    pub fn set_energized(&self, channels: &[u32]) {
        self.shared.knobs().energized = channels.to_vec();
    }

    /// The house's power now, as the next frame will say.
    pub fn power_va(&self) -> u32 {
        self.shared.meter_state().apparent_power_va
    }

    pub fn set_colors(&self, today: Option<TempoColor>, tomorrow: Option<TempoColor>) {
        let mut k = self.shared.knobs();
        k.tempo_today = today;
        k.tempo_tomorrow = tomorrow;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.knobs().mode = mode;
    }

    /// Random bytes between frames.
    pub fn set_noise(&self, on: bool) {
        self.shared.knobs().noise = on;
    }

    /// Nothing on the line.
    pub fn set_silent(&self, on: bool) {
        self.shared.knobs().silent = on;
    }

    /// The next `frames` frames with one bad checksum each.
    pub fn bad_checksums(&self, frames: u32) {
        self.shared.knobs().bad_frames = frames;
    }

    /// The next frame stops in its middle.
    pub fn cut_next_frame(&self) {
        self.shared.knobs().cut_next = true;
    }

    /// The adapter unplugged: the pty closes and its link goes.
    pub fn unplug(&self) {
        self.shared.knobs().plugged = false;
    }

    /// Plugged back: a new pty behind the same link.
    pub fn plug(&self) {
        self.shared.knobs().plugged = true;
    }

    /// Frames sent so far.
    pub fn frames_sent(&self) -> u64 {
        self.shared.frames_sent.load(Ordering::Relaxed)
    }

    /// Applies one command line (the binary's stdin): `today COLOR`,
    /// `tomorrow COLOR` (blue, white, red, none), `mode historic|standard`,
    /// `noise on|off`, `silent on|off`, `bad N`, `cut`, `unplug`, `plug`.
    pub fn command(&self, line: &str) -> Result<(), String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let on = |w: &str| match w {
            "on" => Ok(true),
            "off" => Ok(false),
            other => Err(format!("{other:?}: on or off")),
        };
        match words.as_slice() {
            ["today", c] => {
                let today = color(c)?;
                let tomorrow = self.shared.knobs().tempo_tomorrow;
                self.set_colors(today, tomorrow);
            }
            ["tomorrow", c] => {
                let tomorrow = color(c)?;
                let today = self.shared.knobs().tempo_today;
                self.set_colors(today, tomorrow);
            }
            ["mode", "historic"] => self.set_mode(Mode::Historic),
            ["mode", "standard"] => self.set_mode(Mode::Standard),
            ["noise", w] => self.set_noise(on(w)?),
            ["silent", w] => self.set_silent(on(w)?),
            ["bad", n] => self.bad_checksums(n.parse().map_err(|_| format!("{n:?}: a count"))?),
            ["cut"] => self.cut_next_frame(),
            ["unplug"] => self.unplug(),
            ["plug"] => self.plug(),
            [] => {}
            _ => return Err(format!("{line:?}: unknown command")),
        }
        Ok(())
    }
}

/// `blue`, `white`, `red` or `none`.
pub fn color(word: &str) -> Result<Option<TempoColor>, String> {
    match word {
        "blue" => Ok(Some(TempoColor::Blue)),
        "white" => Ok(Some(TempoColor::White)),
        "red" => Ok(Some(TempoColor::Red)),
        "none" => Ok(None),
        other => Err(format!("{other:?}: blue, white, red or none")),
    }
}

impl Drop for TicStandin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Keeps `energized` as the relay-service at `endpoint` says.
async fn follow(endpoint: String, shared: Arc<Shared>) {
    loop {
        if let Ok(mut client) =
            rpb::relay_service_client::RelayServiceClient::connect(endpoint.clone()).await
            && let Ok(stream) = client.watch_relays(rpb::WatchRelaysRequest {}).await
        {
            let mut stream = stream.into_inner();
            while let Some(Ok(event)) = stream.next().await {
                apply(&shared, event);
            }
        }
        // The relay-service restarting: try again soon.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn apply(shared: &Shared, event: rpb::RelayEvent) {
    use rpb::relay_event::Event;
    let mut k = shared.knobs();
    match event.event {
        Some(Event::Snapshot(s)) => {
            k.energized = s
                .relays
                .iter()
                .filter(|r| r.energized)
                .map(|r| r.channel)
                .collect();
        }
        Some(Event::RelayChanged(r)) => {
            k.energized.retain(|c| *c != r.channel);
            if r.energized {
                k.energized.push(r.channel);
            }
        }
        _ => {}
    }
}
