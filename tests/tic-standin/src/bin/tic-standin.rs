//! `tic-standin`: a stand-in Linky meter on a pseudo-terminal, for the
//! demo and the end-to-end tests. Commands on stdin change it as it runs
//! (see `--help`).

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use delestage_tic::Mode;
use delestage_tic_standin::{Config, TicStandin, Wire, color};

/// A stand-in Linky meter: TIC frames with real checksums on a
/// pseudo-terminal reached through LINK, at the real pace, for a house that
/// follows a relay-service's relays.
///
/// Commands on stdin, one per line: `today COLOR`, `tomorrow COLOR` (blue,
/// white, red, none), `mode historic|standard`, `noise on|off`,
/// `silent on|off`, `bad N` (N frames with a bad checksum), `cut` (the next
/// frame stops in its middle), `unplug`, `plug`.
#[derive(Debug, Parser)]
#[command(name = "tic-standin", version, about, long_about)]
struct Options {
    /// Where the meter's serial device appears (a link to the pty), for
    /// `relay-service --meter LINK`.
    #[arg(long, value_name = "LINK")]
    link: PathBuf,

    /// The TIC mode the meter is in.
    #[arg(long, value_name = "MODE", default_value = "historic", value_parser = ["historic", "standard"])]
    mode: String,

    /// Follow this relay-service's relays (http://HOST:PORT).
    #[arg(long, value_name = "URL")]
    relay: Option<String>,

    /// A load on the meter: CHANNEL:WATTS, or CHANNEL:WATTS:nc when the
    /// relay cuts it when energised. Repeat for each load.
    #[arg(long = "wire", value_name = "WIRE")]
    wiring: Vec<Wire>,

    /// What the house draws with every wired load off, in VA.
    #[arg(long, value_name = "VA", default_value_t = 300)]
    base: u32,

    /// The subscribed power, in VA.
    #[arg(long, value_name = "VA", default_value_t = 9000)]
    subscribed: u32,

    /// Today's Tempo colour (blue, white, red, none).
    #[arg(long, value_name = "COLOR", default_value = "blue")]
    today: String,

    /// Tomorrow's Tempo colour (blue, white, red, none).
    #[arg(long, value_name = "COLOR", default_value = "none")]
    tomorrow: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let o = Options::parse();
    let mut config = Config::new(&o.link);
    config.mode = if o.mode == "standard" {
        Mode::Standard
    } else {
        Mode::Historic
    };
    config.wiring = o.wiring;
    config.base_va = o.base;
    config.subscribed_va = o.subscribed;
    config.tempo_today = color(&o.today).map_err(anyhow::Error::msg)?;
    config.tempo_tomorrow = color(&o.tomorrow).map_err(anyhow::Error::msg)?;
    let mode = config.mode;
    let mut meter = TicStandin::start(config)
        .with_context(|| format!("cannot create the meter's pty at {}", o.link.display()))?;
    if let Some(relay) = o.relay {
        meter.follow(relay);
    }
    // The line tests and the demo wait for.
    println!("tic-standin: meter on {} ({mode} mode)", o.link.display());
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = lines.recv(), if stdin_open => match line {
                Some(line) => match meter.command(&line) {
                    Ok(()) => println!("tic-standin: {}", line.trim()),
                    Err(e) => eprintln!("tic-standin: {e}"),
                },
                None => stdin_open = false,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate() => break,
        }
    }
    drop(meter);
    Ok(())
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
