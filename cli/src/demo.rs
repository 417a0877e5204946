//! `delestage demo`: the whole system in one process, on this machine.
//!
//! relay-service (simulated board), forecast-service (the bundled RTE
//! sandbox payload rebased to today, and a Tempo calendar with a white day
//! today and a red one tomorrow) and controller (the example
//! configuration in `deploy/controller.toml`: four loads, both shed levels)
//! are the real services, served on their usual ports; the live view is a
//! gRPC client of the controller like any other. A stand-in Linky meter
//! (`delestage-tic-standin`, on a pseudo-terminal) measures the house: its
//! power drops when the controller cuts a load, and the relay-service reads
//! it as it would a real meter.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cpb::controller_service_client::ControllerServiceClient;
use delestage_proto::controller::v1 as cpb;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::args::DemoArgs;
use crate::connect::{CliError, Credentials, Service, connect};
use crate::render::{self, Paint};

/// The bundled forecast: RTE's v5 sandbox body (fixed 2022 data).
const SANDBOX: &[u8] = include_bytes!("../../forecast-service/payloads/signals-sandbox-v5.json");
/// The bundled Tempo calendar (RTE's body shape): a blue, a white and a red
/// day, moved so that today is white and tomorrow red.
const TEMPO: &[u8] = include_bytes!("../../forecast-service/payloads/tempo-sample.json");
/// The example loads.
const CONTROLLER_CONFIG: &str = include_str!("../../deploy/controller.toml");

async fn bind(port: u16, what: &str, flag: &str) -> Result<TcpListener, CliError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(addr).await.map_err(|e| {
        CliError::Demo(format!(
            "cannot listen on {addr} for the {what}: {e} (is something already running there? move it with {flag} PORT)"
        ))
    })
}

fn mkdir(dir: &Path) -> Result<PathBuf, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Demo(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir.to_owned())
}

/// Runs the demo until `stop` resolves (Ctrl-C).
pub(crate) async fn run(
    args: DemoArgs,
    paint: Paint,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CliError> {
    let temp;
    let state = match &args.state_dir {
        Some(dir) => mkdir(dir)?,
        None => {
            temp = tempfile::Builder::new()
                .prefix("delestage-demo-")
                .tempdir()
                .map_err(|e| CliError::Demo(format!("cannot create a temporary directory: {e}")))?;
            temp.path().to_owned()
        }
    };

    // Bind all three first: a busy port is a clear error before anything runs.
    let relay_listener = bind(args.relay_port, "relay-service", "--relay-port").await?;
    let forecast_listener = bind(args.forecast_port, "forecast-service", "--forecast-port").await?;
    let controller_listener = bind(args.controller_port, "controller", "--controller-port").await?;
    let http_listener = bind(args.http_port, "the dashboard", "--http-port").await?;

    // Port 0 means any free port: use what was bound from here on.
    let port = |l: &TcpListener, asked: u16| l.local_addr().map_or(asked, |a| a.port());
    let ports = (
        port(&relay_listener, args.relay_port),
        port(&forecast_listener, args.forecast_port),
        port(&controller_listener, args.controller_port),
    );
    let http_port = port(&http_listener, args.http_port);

    let mut relay = relay_settings(&state, ports.0)?;
    let mut meter = demo_meter(&state)?;
    relay.meter = Some(delestage_relay_service::meter::MeterSettings {
        path: meter.link().to_owned(),
        mode: delestage_relay_service::meter::MeterModeChoice::Auto,
    });
    meter.follow(format!("http://127.0.0.1:{}", ports.0));
    let forecast = forecast_settings(&state, ports.1)?;
    let controller = controller_settings(&args, &state, ports, http_port)?;

    // On Ctrl-C the controller stops first, then the services it uses, so
    // that it never sees them go away (and says nothing alarming).
    let stopping = CancellationToken::new();
    let rest = CancellationToken::new();
    tokio::spawn({
        let stopping = stopping.clone();
        async move {
            stop.await;
            stopping.cancel();
        }
    });
    let board = delestage_relay_service::open_board(&relay)
        .map_err(|e| CliError::Demo(format!("relay-service: {e}")))?;
    let relay_task = tokio::spawn(delestage_relay_service::serve(
        relay,
        board,
        relay_listener,
        rest.clone().cancelled_owned(),
    ));
    let forecast_task = tokio::spawn(delestage_forecast_service::serve(
        forecast,
        forecast_listener,
        rest.clone().cancelled_owned(),
    ));
    let controller_task = tokio::spawn(delestage_controller::serve_on(
        controller,
        controller_listener,
        Some(http_listener),
        stopping.clone().cancelled_owned(),
    ));

    let intro = intro(ports, http_port, &state, args.state_dir.is_none());
    if args.no_view {
        eprintln!("{intro}");
        stopping.cancelled().await;
    } else {
        view(ports, &intro, paint, stopping.clone()).await?;
    }
    drop(meter);

    let mut problems = Vec::new();
    if let Ok(Err(e)) = controller_task.await {
        problems.push(format!("controller: {e}"));
    }
    rest.cancel();
    if let Ok(Err(e)) = forecast_task.await {
        problems.push(format!("forecast-service: {e}"));
    }
    if let Ok(Err(e)) = relay_task.await {
        problems.push(format!("relay-service: {e}"));
    }
    if problems.is_empty() {
        println!("demo stopped");
        Ok(())
    } else {
        Err(CliError::Demo(problems.join("; ")))
    }
}

/// The demo's relay-service: a simulated board with four labelled relays.
fn relay_settings(
    state: &Path,
    port: u16,
) -> Result<delestage_relay_service::config::Settings, CliError> {
    let mut relay =
        delestage_relay_service::config::Settings::new(mkdir(&state.join("relay-service"))?);
    relay.listen = format!("127.0.0.1:{port}");
    relay.labels = ["water heater", "EV charger", "heat pump", "pool pump"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(std::iter::repeat_n(String::new(), 4))
        .collect();
    Ok(relay)
}

/// The demo's stand-in Linky meter: a 12 kVA Tempo contract, 600 VA of base
/// load, and the example loads' power on their relays (wired
/// normally-closed, as in deploy/controller.toml).
fn demo_meter(state: &Path) -> Result<delestage_tic_standin::TicStandin, CliError> {
    let link = state.join("linky");
    let mut config = delestage_tic_standin::Config::new(&link);
    config.subscribed_va = 12_000;
    config.base_va = 600;
    config.wiring = [(0, 2400), (1, 3700), (2, 2500), (3, 1100)]
        .into_iter()
        .map(|(channel, watts)| delestage_tic_standin::Wire {
            channel,
            watts,
            normally_closed: true,
        })
        .collect();
    delestage_tic_standin::TicStandin::start(config).map_err(|e| {
        CliError::Demo(format!(
            "cannot create the stand-in meter at {}: {e}",
            link.display()
        ))
    })
}

/// The demo's forecast-service: the bundled RTE sandbox forecast and Tempo
/// sample, both moved to this week.
fn forecast_settings(
    state: &Path,
    port: u16,
) -> Result<delestage_forecast_service::config::Settings, CliError> {
    let payload = state.join("ecowatt-sandbox.json");
    std::fs::write(&payload, SANDBOX)
        .map_err(|e| CliError::Demo(format!("cannot write {}: {e}", payload.display())))?;
    let mut forecast = delestage_forecast_service::config::Settings::with_file(
        &payload,
        mkdir(&state.join("forecast-service"))?,
    );
    forecast.listen = format!("127.0.0.1:{port}");
    forecast.source = delestage_forecast_service::config::SourceSettings::File {
        path: payload.clone(),
        rebase_to_today: true,
    };
    let tempo = state.join("tempo-sample.json");
    std::fs::write(&tempo, TEMPO)
        .map_err(|e| CliError::Demo(format!("cannot write {}: {e}", tempo.display())))?;
    forecast.tempo = delestage_forecast_service::config::TempoSettings::File {
        path: tempo,
        rebase_to_today: true,
    };
    Ok(forecast)
}

/// The demo's controller: the bundled example configuration, pointed at
/// the demo's services, with the dashboard on loopback.
fn controller_settings(
    args: &DemoArgs,
    state: &Path,
    ports: (u16, u16, u16),
    http_port: u16,
) -> Result<delestage_controller::config::Settings, CliError> {
    let controller_listen = format!("127.0.0.1:{}", ports.2);
    let controller_state = mkdir(&state.join("controller"))?;
    let controller_state = controller_state.to_string_lossy();
    let mut flags = vec![
        "--listen",
        &controller_listen,
        "--state-dir",
        &controller_state,
    ];
    if let Some(url) = &args.mqtt {
        flags.extend(["--mqtt", url]);
    }
    let mut controller = delestage_controller::config::Settings::from_toml(
        CONTROLLER_CONFIG,
        Path::new("deploy/controller.toml"),
        &flags,
    )
    .map_err(|e| match &args.mqtt {
        Some(_) if e.to_string().contains("--mqtt") => CliError::Demo(e.to_string()),
        _ => CliError::Demo(format!("the bundled example configuration: {e}")),
    })?;
    controller.forecast = format!("http://127.0.0.1:{}", ports.1);
    for rs in &mut controller.relay_services {
        rs.endpoint = format!("http://127.0.0.1:{}", ports.0);
    }
    // Loopback, no tokens: as the controller would with --http 127.0.0.1:PORT.
    controller.http = Some(delestage_controller::config::HttpSettings {
        listen: format!("127.0.0.1:{http_port}"),
        max_connections: delestage_runtime::connections::DEFAULT_HTTP_MAX_CONNECTIONS,
        security: Default::default(),
    });
    Ok(controller)
}

fn intro(
    (relay, forecast, controller): (u16, u16, u16),
    http: u16,
    state: &Path,
    temporary: bool,
) -> String {
    let env = if (relay, forecast, controller) == (50051, 50052, 50053) {
        String::new()
    } else {
        format!(
            "  export DELESTAGE_RELAY=http://127.0.0.1:{relay} DELESTAGE_FORECAST=http://127.0.0.1:{forecast} DELESTAGE_CONTROLLER=http://127.0.0.1:{controller}\n"
        )
    };
    format!(
        "delestage demo: relay-service (simulated board) on 127.0.0.1:{relay}, forecast-service (RTE sandbox data moved to this week) on 127.0.0.1:{forecast}, controller on 127.0.0.1:{controller}.\n\
         Dashboard: http://127.0.0.1:{http}/ (open it in a browser).\n\
         State in {}{}. Ctrl-C stops everything.\n\n\
         Try, in another terminal:\n{env}\
         \x20 cargo run -q -p delestage-cli -- plan                     # the plan, hour by hour\n\
         \x20 cargo run -q -p delestage-cli -- forecast                 # the Ecowatt forecast\n\
         \x20 cargo run -q -p delestage-cli -- override heat-pump off --for 1h\n\
         \x20 cargo run -q -p delestage-cli -- relays                   # the simulated board\n\
         \x20 cargo run -q -p delestage-cli -- meter                    # the (stand-in) Linky meter\n\
         \x20 cargo run -q -p delestage-cli -- history\n\
         \x20 grpcurl -plaintext 127.0.0.1:{controller} delestage.controller.v1.ControllerService/GetStatus\n\
         \x20 grpcurl -plaintext 127.0.0.1:{forecast} delestage.forecast.v1.ForecastService/GetLevel\n",
        state.display(),
        if temporary { " (temporary)" } else { "" },
    )
}

/// Redraws the controller's status and the meter's power on every change
/// until the demo stops.
async fn view(
    (relay_port, _, port): (u16, u16, u16),
    intro: &str,
    paint: Paint,
    stopping: CancellationToken,
) -> Result<(), CliError> {
    let relay_url = format!("http://127.0.0.1:{relay_port}");
    let relay_channel = connect(Service::Relay, &relay_url, &Credentials::none()).await?;
    let mut readings =
        delestage_proto::meter::v1::meter_service_client::MeterServiceClient::new(relay_channel)
            .watch_meter(delestage_proto::meter::v1::WatchMeterRequest {})
            .await
            .map_err(|s| Service::Relay.error(&relay_url, s))?
            .into_inner();
    let mut power = String::from("Power: waiting for the meter's first frame\n");
    let url = format!("http://127.0.0.1:{port}");
    let channel = connect(Service::Controller, &url, &Credentials::none()).await?;
    let mut client = ControllerServiceClient::new(channel);
    let mut events = client
        .watch_events(cpb::WatchEventsRequest {})
        .await
        .map_err(|s| Service::Controller.error(&url, s))?
        .into_inner();
    let mut status = cpb::ControllerStatus::default();
    let mut switches: Vec<String> = Vec::new();
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            r = readings.next() => {
                if let Some(Ok(r)) = r {
                    power = format!(
                        "Power: {} VA of {} VA subscribed (Linky, {} mode)\n",
                        r.apparent_power_va,
                        r.subscribed_va,
                        delestage_proto::json::meter_mode_name(r.mode()),
                    );
                }
                Some(Ok(cpb::WatchEventsResponse::default()))
            }
            _ = stopping.cancelled() => return Ok(()),
        };
        let Some(Ok(event)) = event else {
            return Ok(());
        };
        match event.event {
            Some(cpb::watch_events_response::Event::Status(s)) => status = s,
            Some(cpb::watch_events_response::Event::LoadChanged(l)) => {
                match status.loads.iter_mut().find(|x| x.name == l.name) {
                    Some(slot) => *slot = l,
                    None => status.loads.push(l),
                }
            }
            Some(cpb::watch_events_response::Event::Switched(r)) => {
                let clock = render::Clock::paris_now();
                switches.push(format!(
                    "{}  {} {}",
                    render::time(r.at.as_ref()).map_or("?".to_owned(), |t| clock.show(t)),
                    r.load,
                    if r.to_powered { "back on" } else { "cut" },
                ));
                if switches.len() > 8 {
                    switches.remove(0);
                }
                // The whole status again, for the level and the relays.
                if let Ok(s) = client.get_status(cpb::GetStatusRequest {}).await
                    && let Some(s) = s.into_inner().status
                {
                    status = s;
                }
            }
            None => {}
        }
        let body = render::status_text(&status, paint, &render::Clock::paris_now());
        let recent = if switches.is_empty() {
            String::new()
        } else {
            format!("\nRecent switches:\n  {}\n", switches.join("\n  "))
        };
        if paint.enabled {
            // Clear the screen and draw from the top.
            print!("\x1b[2J\x1b[H{intro}\n{power}{body}{recent}");
        } else {
            println!("{power}{body}{recent}");
        }
    }
}
