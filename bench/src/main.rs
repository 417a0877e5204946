//! `loadgen`: delestage's load generator.
//!
//! In one run, on this machine, over loopback: starts relay-service
//! (simulated board, wear guard lifted), forecast-service (the bundled
//! payload) and a bare tonic service built for the comparison, as separate
//! processes; drives GetRelays, GetLevel and SetRelay at them with the same
//! client and concurrency; then measures the controller's reaction time,
//! each service's memory and its time from start to SERVING. Prints a table
//! and, last, `ratio GetRelays=X.XX GetLevel=X.XX` (ours / bare throughput).
//!
//! Run it with `scripts/bench` (it builds the release binaries first).

mod bare;
mod fanout;
mod fleet;
mod load;
mod power;
mod procs;
mod reaction;
mod relay_watchers;
mod scale;
mod soak;

use std::time::Duration;

use clap::{Parser, Subcommand};
use delestage_proto::forecast::v1 as fpb;
use delestage_proto::relay::v1 as rpb;
use fpb::forecast_service_client::ForecastServiceClient;
use rpb::relay_service_client::RelayServiceClient;
use tonic::transport::Channel;

use crate::load::{LoadResult, LoadSpec};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "delestage's load generator: our services beside a bare tonic service"
)]
struct Args {
    /// Requests per RPC measured (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 50_000)]
    requests: u64,
    /// Concurrent requests (HTTP/2 streams on one connection).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Upper bound on each RPC's run.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    max_time: Duration,
    /// Forecast changes to time the controller's reaction on.
    #[arg(long, default_value_t = 40)]
    reaction_samples: usize,
    /// Starts of each service to time.
    #[arg(long, default_value_t = 5)]
    startup_runs: usize,
    /// Concurrent clients on one forecast-service (the fleet test).
    #[arg(long, default_value_t = 1000)]
    fleet: usize,
    /// How long the fleet test runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    fleet_time: Duration,
    /// A quick run (a few hundred requests), to check the tool works.
    #[arg(long)]
    smoke: bool,
    /// Instead of the benchmark: the soak, for this long (e.g. 60s), with
    /// --soak-clients clients on the three services at once.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    soak: Option<Duration>,
    /// Clients during the soak.
    #[arg(long, default_value_t = 256)]
    soak_clients: usize,
    /// Instead of the benchmark: forecast fan-out. Opens N WatchForecast
    /// streams on one forecast-service, pushes one new forecast, and prints
    /// `fanout watchers=N deliver_p99_ms=X rss_per_watcher_kib=Y` (after a
    /// line on the memory left once the watchers leave).
    #[arg(long, value_name = "N")]
    watchers: Option<usize>,
    /// Instead of the benchmark: controller scale. Starts N relay-services
    /// and one controller with 8 loads per box, cuts every load, restores
    /// them, and prints exactly one line: `scale boxes=N loads=M
    /// cut_p99_ms=X plan_ms=Y status_p99_ms=Z controller_rss_mib=W`
    /// (progress goes to stderr).
    #[arg(long, value_name = "N")]
    scale_boxes: Option<usize>,
    /// Instead of the benchmark: shedding by power in a closed loop (the
    /// stand-in Linky, relay-service, controller). Prints exactly one line:
    /// `power cross_to_cut_p99_ms=X cross_to_under_p99_ms=Y
    /// overshoot_frames_max=Z` (progress goes to stderr).
    #[arg(long)]
    power: bool,
    /// Cycles of the --power run (an oven on, a cut, the oven off, a restore).
    #[arg(long, value_name = "N", default_value_t = 20)]
    power_cycles: usize,
    /// Rounds of watchers that come and leave, for the memory figures.
    #[arg(long, value_name = "N", default_value_t = 4)]
    watcher_rounds: usize,
    /// Measure only these RPCs (GetRelays, GetLevel, SetRelay); for
    /// profiling one of them.
    #[arg(long, value_name = "RPC")]
    only: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the bare baseline (started by the load generator itself).
    #[command(hide = true)]
    ServeBare {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Accepted for the process helper; the baseline does not log.
        #[arg(long)]
        log_format: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let Some(Command::ServeBare { listen, .. }) = &args.command {
        return bare::serve(listen).await;
    }
    if let Some(boxes) = args.scale_boxes {
        let s = scale::measure(&procs::bin_dir()?, boxes).await?;
        println!(
            "scale boxes={} loads={} cut_p99_ms={:.1} plan_ms={:.2} status_p99_ms={:.2} controller_rss_mib={:.1}",
            s.boxes, s.loads, s.cut_p99_ms, s.plan_ms, s.status_p99_ms, s.controller_rss_mib
        );
        return Ok(());
    }
    if args.power {
        let cycles = if args.smoke { 2 } else { args.power_cycles };
        let p = power::measure(&procs::bin_dir()?, cycles).await?;
        println!(
            "power cross_to_cut_p99_ms={} cross_to_under_p99_ms={} overshoot_frames_max={}",
            p.cross_to_cut.value_at_quantile(0.99),
            p.cross_to_under.value_at_quantile(0.99),
            p.overshoot_frames_max
        );
        return Ok(());
    }
    if let Some(watchers) = args.watchers {
        return print_fanout(watchers, args.watcher_rounds).await;
    }
    if let Some(duration) = args.soak {
        return soak::run(&procs::bin_dir()?, args.soak_clients, duration).await;
    }
    if args.smoke {
        args.requests = args.requests.min(300);
        args.reaction_samples = args.reaction_samples.min(2);
        args.startup_runs = args.startup_runs.min(1);
        args.fleet = args.fleet.min(50);
        args.fleet_time = args.fleet_time.min(Duration::from_secs(1));
        args.max_time = args.max_time.min(Duration::from_secs(10));
    }
    run(args).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = procs::bin_dir()?;
    let state = tempfile::tempdir()?;
    let relay_state = state.path().join("relay").to_string_lossy().into_owned();
    let payload = format!(
        "{}/../forecast-service/payloads/signals-sandbox-v5.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let forecast_state = state.path().join("forecast").to_string_lossy().into_owned();

    println!(
        "delestage loadgen: {} requests per RPC, {} concurrent streams, loopback; {} cores",
        args.requests,
        args.concurrency,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Start-up: spawn to SERVING, several times each.
    let relay_bin = procs::binary(&dir, "relay-service")?;
    let forecast_bin = procs::binary(&dir, "forecast-service")?;
    let relay_args = [
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        relay_state.as_str(),
        "--benchmark-without-wear-guard",
    ];
    let forecast_args = [
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        forecast_state.as_str(),
        "--file",
        payload.as_str(),
        "--rebase-to-today",
    ];
    let mut relay_starts = Vec::new();
    let mut forecast_starts = Vec::new();
    for _ in 0..args.startup_runs.saturating_sub(1) {
        let (p, t) = procs::start(&relay_bin, &relay_args, &[], RELAY).await;
        relay_starts.push(t);
        procs::stop(p).await;
        let (p, t) = procs::start(&forecast_bin, &forecast_args, &[], FORECAST).await;
        forecast_starts.push(t);
        procs::stop(p).await;
    }
    let (relay, t) = procs::start(&relay_bin, &relay_args, &[], RELAY).await;
    relay_starts.push(t);
    let (forecast, t) = procs::start(&forecast_bin, &forecast_args, &[], FORECAST).await;
    forecast_starts.push(t);
    let self_bin = std::env::current_exe()?;
    let (bare, _) = procs::start(
        &self_bin,
        &["serve-bare", "--listen", "127.0.0.1:0"],
        &[],
        "",
    )
    .await;
    let relay_idle = procs::memory(&relay);
    let forecast_idle = procs::memory(&forecast);

    let spec = LoadSpec {
        concurrency: args.concurrency,
        requests: args.requests,
        max_time: args.max_time,
    };
    let ours_relay = relay.channel().await;
    let ours_forecast = forecast.channel().await;
    let bare_channel = bare.channel().await;

    let rows = throughput(&args, spec, &ours_relay, &ours_forecast, &bare_channel).await;
    let relay_loaded = procs::memory(&relay);
    let forecast_loaded = procs::memory(&forecast);
    procs::stop(bare).await;
    procs::stop(relay).await;
    procs::stop(forecast).await;

    let reaction = reaction::measure(&dir, args.reaction_samples).await?;
    let fleet = fleet::measure(&dir, args.fleet, args.fleet_time).await?;

    report(
        &rows,
        &reaction,
        &fleet,
        [
            ("relay-service", relay_idle, relay_loaded, &relay_starts),
            (
                "forecast-service",
                forecast_idle,
                forecast_loaded,
                &forecast_starts,
            ),
        ],
    );
    Ok(())
}

/// Requests per second and latencies of our services' RPCs, beside a
/// bare tonic service doing nothing, each after a warm-up.
async fn throughput(
    args: &Args,
    spec: LoadSpec,
    ours_relay: &Channel,
    ours_forecast: &Channel,
    bare_channel: &Channel,
) -> Vec<(&'static str, LoadResult, LoadResult)> {
    let get_relays = |channel: Channel| {
        move |_task: usize, _n: u64| {
            let mut client = RelayServiceClient::new(channel.clone());
            async move {
                client
                    .get_relays(rpb::GetRelaysRequest {})
                    .await
                    .map(drop)
                    .map_err(|s| s.to_string())
            }
        }
    };
    let get_level = |channel: Channel| {
        move |_task: usize, _n: u64| {
            let mut client = ForecastServiceClient::new(channel.clone());
            async move {
                client
                    .get_level(fpb::GetLevelRequest { at: None })
                    .await
                    .map(drop)
                    .map_err(|s| s.to_string())
            }
        }
    };
    // Each task toggles a relay of its own (8 channels), so every call
    // really switches and persists.
    let set_relay = |channel: Channel| {
        move |task: usize, n: u64| {
            let mut client = RelayServiceClient::new(channel.clone());
            async move {
                client
                    .set_relay(rpb::SetRelayRequest {
                        channel: (task % 8) as u32,
                        energized: n.is_multiple_of(2),
                    })
                    .await
                    .map(drop)
                    .map_err(|s| s.to_string())
            }
        }
    };

    let mut rows = Vec::new();
    for (rpc, ours, base) in [
        ("GetRelays", Which::GetRelays, Which::GetRelays),
        ("GetLevel", Which::GetLevel, Which::GetLevel),
        ("SetRelay", Which::SetRelay, Which::SetRelay),
    ] {
        if !args.only.is_empty() && !args.only.iter().any(|o| o.eq_ignore_ascii_case(rpc)) {
            continue;
        }
        let measure = |which: Which, channel: Channel| async move {
            let warm = LoadSpec {
                requests: (spec.requests / 10).max(1),
                ..spec
            };
            match which {
                Which::GetRelays => {
                    load::run(warm, get_relays(channel.clone())).await;
                    load::run(spec, get_relays(channel)).await
                }
                Which::GetLevel => {
                    load::run(warm, get_level(channel.clone())).await;
                    load::run(spec, get_level(channel)).await
                }
                Which::SetRelay => {
                    load::run(warm, set_relay(channel.clone())).await;
                    load::run(spec, set_relay(channel)).await
                }
            }
        };
        let ours_channel = match ours {
            Which::GetLevel => ours_forecast.clone(),
            _ => ours_relay.clone(),
        };
        let b = measure(base, bare_channel.clone()).await;
        let o = measure(ours, ours_channel).await;
        rows.push((rpc, o, b));
    }
    rows
}

/// The figures, as `scripts/bench` prints them (and docs/performance.md
/// quotes them).
fn report(
    rows: &[(&str, LoadResult, LoadResult)],
    reaction: &reaction::Reaction,
    fleet: &fleet::Fleet,
    services: [(&str, procs::Memory, procs::Memory, &Vec<Duration>); 2],
) {
    println!();
    println!(
        "{:<10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>7}   {:>10} {:>9} {:>9} {:>9}",
        "RPC",
        "ours req/s",
        "errors",
        "p50",
        "p99",
        "p99.9",
        "ratio",
        "bare req/s",
        "p50",
        "p99",
        "p99.9"
    );
    for (rpc, o, b) in rows {
        println!(
            "{:<10} {:>10.0} {:>10} {:>9} {:>9} {:>9} {:>7.2}   {:>10.0} {:>9} {:>9} {:>9}",
            rpc,
            o.rps(),
            o.errors,
            us(o.quantile_us(0.5)),
            us(o.quantile_us(0.99)),
            us(o.quantile_us(0.999)),
            o.rps() / b.rps().max(1e-9),
            b.rps(),
            us(b.quantile_us(0.5)),
            us(b.quantile_us(0.99)),
            us(b.quantile_us(0.999)),
        );
        if let Some(e) = &o.first_error {
            println!("  first error from ours: {e}");
        }
    }
    if let Some((_, o, b)) = rows.iter().find(|(rpc, _, _)| *rpc == "SetRelay") {
        let added = o.quantile_us(0.5).saturating_sub(b.quantile_us(0.5));
        println!(
            "SetRelay adds {} at p50 over the bare service ({} at p99), to a relay that takes 18 ms to switch",
            us(added),
            us(o.quantile_us(0.99).saturating_sub(b.quantile_us(0.99)))
        );
    }
    println!();
    println!(
        "controller reaction (forecast pushed -> relay switched, {} samples): p50 {} p99 {} max {}",
        reaction.latency.len(),
        us(reaction.latency.value_at_quantile(0.5)),
        us(reaction.latency.value_at_quantile(0.99)),
        us(reaction.latency.max()),
    );
    println!(
        "forecast-service fleet: {} clients, {:.0} req/s (GetForecast + GetLevel), p99 {}, {} errors; {} upstream calls in {:.1} s with a {} ms refresh (at most one per refresh)",
        fleet.clients,
        fleet.load.rps(),
        us(fleet.load.quantile_us(0.99)),
        fleet.load.errors,
        fleet.upstream_calls,
        fleet.load.elapsed.as_secs_f64(),
        fleet.refresh.as_millis(),
    );
    if let Some(e) = &fleet.load.first_error {
        println!("  first error from the fleet: {e}");
    }
    println!();
    println!(
        "{:<17} {:>12} {:>14} {:>16}",
        "service", "idle RSS", "loaded (peak)", "start->SERVING"
    );
    for (name, idle, loaded, starts) in services {
        println!(
            "{:<17} {:>12} {:>14} {:>16}",
            name,
            procs::mib(idle.rss_kib),
            procs::mib(loaded.peak_kib),
            median(starts)
        );
    }
    println!(
        "{:<17} {:>12} {:>14} {:>16}",
        "controller",
        procs::mib(reaction.controller_idle.rss_kib),
        "-",
        format!("{:.0} ms", reaction.controller_start.as_secs_f64() * 1000.0)
    );
    println!();
    let ratio = |name: &str| {
        rows.iter()
            .find(|(rpc, _, _)| *rpc == name)
            .map_or(0.0, |(_, o, b): &(&str, LoadResult, LoadResult)| {
                o.rps() / b.rps().max(1e-9)
            })
    };
    println!(
        "ratio GetRelays={:.2} GetLevel={:.2}",
        ratio("GetRelays"),
        ratio("GetLevel")
    );
}

async fn print_fanout(watchers: usize, rounds: usize) -> anyhow::Result<()> {
    let dir = procs::bin_dir()?;
    // The same streams code serves WatchRelays: its memory as watchers come
    // and go (2000 of them, or fewer for a small run).
    let relay_watchers = watchers.min(2000);
    let r = relay_watchers::measure(&dir, relay_watchers, rounds.max(1)).await?;
    println!(
        "WatchRelays memory: relay-service RSS {} idle, {} with {relay_watchers} watchers, after they left (each of {} rounds): {} MiB, once their connections closed: {}",
        procs::mib(r.idle_kib),
        procs::mib(r.watching_kib),
        r.after_rounds_kib.len(),
        r.after_rounds_kib
            .iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", "),
        procs::mib(r.disconnected_kib),
    );
    let f = fanout::measure(&dir, watchers, rounds.max(1)).await?;
    let after: Vec<String> = f
        .rss_after_rounds_kib
        .iter()
        .map(|k| format!("{:.1}", *k as f64 / 1024.0))
        .collect();
    println!(
        "fanout memory: forecast-service RSS {} idle, {} with {} watchers, after they left (each of {} rounds): {} MiB, once their connections closed: {}",
        procs::mib(f.rss_idle_kib),
        procs::mib(f.rss_watching_kib),
        f.watchers,
        after.len(),
        after.join(", "),
        procs::mib(f.rss_disconnected_kib),
    );
    println!(
        "fanout watchers={} deliver_p99_ms={:.1} rss_per_watcher_kib={:.1}",
        f.watchers,
        f.deliver.value_at_quantile(0.99) as f64 / 1000.0,
        f.rss_per_watcher_kib()
    );
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Which {
    GetRelays,
    GetLevel,
    SetRelay,
}

const RELAY: &str = "delestage.relay.v1.RelayService";
const FORECAST: &str = "delestage.forecast.v1.ForecastService";

fn us(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1}ms", v as f64 / 1000.0)
    } else {
        format!("{v}µs")
    }
}

fn median(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).map_or("-".to_owned(), |d| {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    })
}
