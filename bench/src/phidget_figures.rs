//! `phidget-figures`: how fast the Phidget backend reacts, measured on the
//! vendor's real libphidget22 with a virtual 1017_2 at the USB boundary
//! (run after `eval "$(scripts/phidget-env)"`, with a relay-service built
//! with `--features phidget`). Prints:
//!
//! - plug → attached (WatchRelays says so);
//! - SetRelay sent → the coil changed in `SERIAL.json`, and SetRelay
//!   answered → coil changed (negative: the coil changed before the answer
//!   came back), p50 and p99 over `--samples` switches (the wear guard's 20
//!   a minute per channel paces them over the eight channels);
//! - unplug → the first `applied: false` in WatchRelays;
//! - a failsafe trip → re-armed and re-applied: the service SIGSTOPped past
//!   its `--hardware-failsafe`, then SIGCONT (the trip reports are read at
//!   once then): from SIGCONT to every coil back and every channel armed.
//!
//! Figures, not assertions: the tests check the behaviour.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use delestage_proto::relay::v1 as pb;
use delestage_tests::{ServiceProcess, VirtualUsb};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pb::relay_service_client::RelayServiceClient;
use tokio_stream::StreamExt;

#[derive(Parser)]
#[command(
    about = "Reaction times of the Phidget backend on the real libphidget22 and a virtual 1017_2"
)]
struct Args {
    /// The relay-service binary (built with `--features phidget`).
    #[arg(long, default_value = "target/release/relay-service")]
    relay_service: PathBuf,
    /// SetRelay round trips to time.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Plug / unplug cycles and trips to time.
    #[arg(long, default_value_t = 10)]
    cycles: usize,
}

const SERIAL: u32 = 424_242;
const BOUND: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("LD_LIBRARY_PATH").is_none() {
        bail!(
            "run after `eval \"$(scripts/phidget-env)\"` (the real libphidget22 and the virtual 1017)"
        );
    }
    let usb = VirtualUsb::new();
    let state = tempfile::tempdir()?;
    let (name, dir) = usb.env();
    let svc = ServiceProcess::start(
        &args.relay_service,
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.path().to_str().context("utf-8 path")?,
            "--board",
            "phidget",
            "--serial",
            &SERIAL.to_string(),
            "--hardware-failsafe",
            "500ms",
        ],
        &[(name, &dir)],
    )
    .await;
    let channel = svc.wait_serving("delestage.relay.v1.RelayService").await;
    let mut client = RelayServiceClient::new(channel.clone());
    let mut events = client
        .watch_relays(pb::WatchRelaysRequest {})
        .await?
        .into_inner();

    plug_cycles(&usb, &mut events, args.cycles).await?;
    let on = switch_times(&usb, &mut client, args.samples).await?;
    trip_recovery(&usb, &svc, on, args.cycles.min(5)).await?;
    svc.stop_with(Signal::SIGTERM).await;
    Ok(())
}

/// Step 1: plug → attached, unplug → applied: false, `cycles` times;
/// then plugged for what follows.
async fn plug_cycles(
    usb: &VirtualUsb,
    events: &mut tonic::Streaming<pb::RelayEvent>,
    cycles: usize,
) -> anyhow::Result<()> {
    let mut attach = Vec::new();
    let mut detach = Vec::new();
    for _ in 0..cycles {
        let plugged = Instant::now();
        usb.plug("1017_2", SERIAL);
        next_event(
            events,
            |e| matches!(e, pb::relay_event::Event::BoardChanged(b) if b.attached),
        )
        .await?;
        attach.push(plugged.elapsed());
        wait_file(usb, "armed and applied", |b| {
            b.failsafe.iter().all(|f| f == "armed")
        })
        .await?;
        let unplugged = Instant::now();
        usb.unplug(SERIAL);
        next_event(
            events,
            |e| matches!(e, pb::relay_event::Event::RelayChanged(r) if r.applied == Some(false)),
        )
        .await?;
        detach.push(unplugged.elapsed());
    }
    usb.plug("1017_2", SERIAL);
    wait_file(usb, "armed", |b| b.failsafe.iter().all(|f| f == "armed")).await?;
    print_figure("plug → attached (WatchRelays)", &mut attach);
    print_figure("unplug → applied: false (WatchRelays)", &mut detach);

    Ok(())
}

/// Step 2: SetRelay → coil, watched by a thread that reads the file as
/// fast as it can; returns the coils' states at the end.
async fn switch_times(
    usb: &VirtualUsb,
    client: &mut RelayServiceClient<tonic::transport::Channel>,
    samples: usize,
) -> anyhow::Result<[bool; 8]> {
    let changes = watch_coils(usb);
    let mut sent_to_coil = Vec::new();
    let mut answered_to_coil: Vec<i64> = Vec::new();
    let mut on = [false; 8];
    let pace = Duration::from_secs(60) / (8 * 20) + Duration::from_millis(5);
    for i in 0..samples {
        let ch = i % 8;
        on[ch] = !on[ch];
        let sent = Instant::now();
        client
            .set_relay(pb::SetRelayRequest {
                channel: ch as u32,
                energized: on[ch],
            })
            .await
            .with_context(|| format!("SetRelay {ch}"))?;
        let answered = Instant::now();
        let coil = wait_coil(&changes, sent, ch, on[ch]).await?;
        sent_to_coil.push(coil.duration_since(sent));
        answered_to_coil.push(if coil >= answered {
            coil.duration_since(answered).as_micros() as i64
        } else {
            -(answered.duration_since(coil).as_micros() as i64)
        });
        tokio::time::sleep(pace.saturating_sub(sent.elapsed())).await;
    }
    print_figure(
        "SetRelay sent → coil changed in SERIAL.json",
        &mut sent_to_coil,
    );
    answered_to_coil.sort_unstable();
    println!(
        "{:<52} p50 {:>8.3} ms   p99 {:>8.3} ms   (n={}; negative: the coil changed before the answer arrived)",
        "SetRelay answered → coil changed in SERIAL.json",
        answered_to_coil[answered_to_coil.len() / 2] as f64 / 1000.0,
        answered_to_coil[(answered_to_coil.len() * 99)
            .div_ceil(100)
            .saturating_sub(1)] as f64
            / 1000.0,
        answered_to_coil.len()
    );

    Ok(on)
}

/// Step 3: a trip → re-armed and re-applied (the coils as the switches
/// before left them: the wear guard allows no more switching now).
async fn trip_recovery(
    usb: &VirtualUsb,
    svc: &ServiceProcess,
    on: [bool; 8],
    cycles: usize,
) -> anyhow::Result<()> {
    let expected: Vec<u32> = (0..8u32).filter(|&ch| on[ch as usize]).collect();
    let pid = Pid::from_raw(svc.pid().context("relay-service runs")? as i32);
    let mut recovered = Vec::new();
    for _ in 0..cycles {
        kill(pid, Signal::SIGSTOP)?;
        wait_file(usb, "tripped", |b| {
            b.failsafe.iter().all(|f| f == "tripped")
        })
        .await?;
        let thawed = Instant::now();
        kill(pid, Signal::SIGCONT)?;
        wait_file(usb, "re-armed and re-applied", |b| {
            b.energized() == expected && b.failsafe.iter().all(|f| f == "armed")
        })
        .await?;
        recovered.push(thawed.elapsed());
    }
    print_figure(
        "failsafe trip reported → re-armed and re-applied",
        &mut recovered,
    );
    Ok(())
}

fn print_figure(what: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let at = |q: usize| samples[(samples.len() * q).div_ceil(100).saturating_sub(1)];
    println!(
        "{what:<52} p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms   (n={})",
        at(50).as_secs_f64() * 1000.0,
        at(99).as_secs_f64() * 1000.0,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        samples.len()
    );
}

async fn next_event(
    events: &mut tonic::Streaming<pb::RelayEvent>,
    wanted: impl Fn(&pb::relay_event::Event) -> bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(BOUND, async {
        while let Some(event) = events.next().await {
            if let Some(e) = event?.event
                && wanted(&e)
            {
                return Ok(());
            }
        }
        bail!("WatchRelays ended")
    })
    .await
    .context("no such event within the bound")?
}

async fn wait_file(
    usb: &VirtualUsb,
    what: &str,
    done: impl Fn(&delestage_tests::VirtualBoard) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + BOUND;
    while !usb.board(SERIAL).is_some_and(|b| done(&b)) {
        if Instant::now() > deadline {
            bail!(
                "board {SERIAL} not {what} within the bound: {:?}",
                usb.board(SERIAL)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Every change of the coils, with when it was first seen.
type Changes = Arc<Mutex<Vec<(Instant, Vec<bool>)>>>;

fn watch_coils(usb: &VirtualUsb) -> Changes {
    let changes: Changes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&changes);
    let path = usb.path().join(format!("{SERIAL}.json"));
    std::thread::spawn(move || {
        let mut last = Vec::new();
        // Ends with the process.
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(v) = serde_json_value(&text)
                && v != last
            {
                last = v.clone();
                seen.lock().expect("lock").push((Instant::now(), v));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    });
    changes
}

fn serde_json_value(text: &str) -> Result<Vec<bool>, ()> {
    // `"relays":[true,false,...]`, without a JSON parser in this crate.
    let start = text.find("\"relays\":[").ok_or(())? + "\"relays\":[".len();
    let end = start + text[start..].find(']').ok_or(())?;
    Ok(text[start..end]
        .split(',')
        .map(|v| v.trim() == "true")
        .collect())
}

async fn wait_coil(
    changes: &Changes,
    since: Instant,
    ch: usize,
    on: bool,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some((at, _)) = changes
            .lock()
            .expect("lock")
            .iter()
            .find(|(at, coils)| *at >= since && coils.get(ch) == Some(&on))
        {
            return Ok(*at);
        }
        if Instant::now() > deadline {
            bail!("coil {ch} never became {on}");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}
