//! The controller against a real relay-service (simulated board) and a real
//! forecast-service (file source), each a tonic server on 127.0.0.1:0,
//! in-process (`delestage_tests::in_process`). The forecast is changed by rewriting the file, as an
//! operator (or a script) would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use delestage_controller::config::{RelayService, Settings};
use delestage_controller::model::{Fallback, Load, RelayAddress, SignalLevel, Wiring};
use delestage_proto::controller::v1 as pb;
use delestage_proto::relay::v1 as rpb;
use delestage_runtime::telemetry::LogFormat;
use rpb::relay_service_client::RelayServiceClient;
use tokio::net::TcpListener;

use delestage_forecast_service::Error as ForecastError;
use delestage_forecast_service::config::Settings as ForecastSettings;
use delestage_relay_service::Error as RelayError;
use delestage_relay_service::board::SimulatedBoard;
use delestage_relay_service::config::{OnStart, Settings as RelaySettings};
use delestage_tests::in_process::controller::serve as start_controller;
use delestage_tests::in_process::{InProcess, any_port, forecast, relay};
use delestage_tests::{
    BOUND, energized, history, load_status, wait_energized, wait_history, wait_status,
    write_forecast,
};

/// Binds `at` (`127.0.0.1:0`, or a port again for a restart).
async fn bind(at: &str) -> TcpListener {
    TcpListener::bind(at).await.expect("bind")
}

/// A relay-service on a simulated board (also given, to unplug it).
async fn start_relays(
    state: &Path,
    on_start: OnStart,
    at: &str,
) -> (InProcess<RelayError>, SimulatedBoard) {
    start_relays_with(state, on_start, at, 20).await
}

async fn start_relays_with(
    state: &Path,
    on_start: OnStart,
    at: &str,
    max_switches_per_minute: u32,
) -> (InProcess<RelayError>, SimulatedBoard) {
    let mut settings = RelaySettings::new(state);
    settings.on_start = on_start;
    settings.max_switches_per_minute = max_switches_per_minute;
    relay::on_a_simulated_board(settings, bind(at).await)
}

async fn start_forecast(file: &Path, state: &Path) -> InProcess<ForecastError> {
    let settings = ForecastSettings::with_file(file, state);
    forecast::serve(settings, any_port().await)
}

fn load(name: &str, channel: u32, shed_at: SignalLevel, wiring: Wiring, priority: i32) -> Load {
    let relay = RelayAddress {
        relay_service: "garage".to_owned(),
        channel,
    };
    Load {
        priority,
        ..Load::new(name, relay, wiring, shed_at)
    }
}

fn controller_settings(state: &Path, relays: &str, forecast: &str, loads: Vec<Load>) -> Settings {
    Settings {
        listen: "127.0.0.1:0".to_owned(),
        state_dir: state.to_owned(),
        forecast: forecast.to_owned(),
        forecast_security: Default::default(),
        relay_services: vec![RelayService {
            name: "garage".to_owned(),
            endpoint: relays.to_owned(),
            security: Default::default(),
        }],
        loads,
        restore_stagger: Duration::ZERO,
        restore_jitter: Duration::ZERO,
        forecast_max_age: Duration::from_secs(6 * 3600),
        log_format: LogFormat::Text,
        metrics: None,
        max_streams: 100,
        max_connections: 512,
        security: Default::default(),
        http: None,
        mqtt: None,
        meter_relay: None,
        power: None,
        config_path: PathBuf::from("test.toml"),
    }
}

const GREEN: u8 = 1;
const ORANGE: u8 = 2;
const RED: u8 = 3;

/// Four loads: orange and red, each wired both ways, on channels 0..=3.
fn four_loads() -> Vec<Load> {
    vec![
        load("heater", 0, SignalLevel::Orange, Wiring::NormallyOpen, 10),
        load("ev", 1, SignalLevel::Red, Wiring::NormallyOpen, 5),
        load("pump", 2, SignalLevel::Orange, Wiring::NormallyClosed, 20),
        load("pool", 3, SignalLevel::Red, Wiring::NormallyClosed, 1),
    ]
}

struct Rig {
    dir: tempfile::TempDir,
    forecast_file: PathBuf,
    relays: InProcess<RelayError>,
    /// The relay-service's board, to unplug it.
    board: SimulatedBoard,
    forecast: InProcess<ForecastError>,
}

impl Rig {
    async fn start(level: u8) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["relays", "forecast", "controller"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        let forecast_file = dir.path().join("forecast/ecowatt.json");
        write_forecast(&forecast_file, level);
        let (relays, board) =
            start_relays(&dir.path().join("relays"), OnStart::Restore, "127.0.0.1:0").await;
        let forecast = start_forecast(&forecast_file, &dir.path().join("forecast")).await;
        Self {
            dir,
            forecast_file,
            relays,
            board,
            forecast,
        }
    }

    fn controller_settings(&self, loads: Vec<Load>) -> Settings {
        controller_settings(
            &self.dir.path().join("controller"),
            &self.relays.url(),
            &self.forecast.url(),
            loads,
        )
    }

    async fn stop(self) {
        self.relays.stop().await;
        self.forecast.stop().await;
    }
}

#[tokio::test]
async fn tense_hours_cut_exactly_the_right_loads_with_both_wirings() {
    let rig = Rig::start(GREEN).await;
    let (ctl, mut client) = start_controller(rig.controller_settings(four_loads())).await;

    // Green: everything powered. Normally-open relays energised (0, 1),
    // normally-closed ones released (2, 3).
    wait_energized(&rig.relays.channel(), &[0, 1], "the relays").await;
    let status = wait_status(&mut client, "green, all powered", |s| {
        s.loads.iter().all(|l| l.powered == Some(true) && l.desired)
    })
    .await;
    assert_eq!(
        status.level(),
        delestage_proto::forecast::v1::SignalLevel::Green
    );
    assert!(status.forecast.as_ref().is_some_and(|f| f.usable));

    // Orange: the two orange loads are cut (heater: release 0; pump:
    // energise 2), the red ones stay.
    write_forecast(&rig.forecast_file, ORANGE);
    wait_energized(&rig.relays.channel(), &[1, 2], "the relays").await;
    let status = wait_status(&mut client, "orange", |s| {
        load_status(s, "heater").powered == Some(false)
    })
    .await;
    let heater = load_status(&status, "heater");
    assert_eq!(heater.reason(), pb::Reason::ShedForLevel);
    assert_eq!(
        heater.reason_level(),
        delestage_proto::forecast::v1::SignalLevel::Orange
    );
    assert_eq!(load_status(&status, "ev").powered, Some(true));

    // Red: everything is cut.
    write_forecast(&rig.forecast_file, RED);
    wait_energized(&rig.relays.channel(), &[2, 3], "the relays").await;

    // Green again: everything comes back.
    write_forecast(&rig.forecast_file, GREEN);
    wait_energized(&rig.relays.channel(), &[0, 1], "the relays").await;

    // Every switch is in the history with its reason and level, newest first.
    let records = wait_history(&mut client, "ten switches", |h| h.len() >= 10).await;
    let cuts: Vec<_> = records
        .iter()
        .filter(|r| !r.to_powered)
        .map(|r| (r.load.as_str(), r.level()))
        .collect();
    use delestage_proto::forecast::v1::SignalLevel as L;
    assert!(
        cuts.contains(&("heater", L::Orange)) && cuts.contains(&("pump", L::Orange)),
        "{cuts:?}"
    );
    assert!(
        cuts.contains(&("ev", L::Red)) && cuts.contains(&("pool", L::Red)),
        "{cuts:?}"
    );
    // 2 to power the normally-open loads at first (a fresh relay-service
    // starts all off), 2 for orange, 2 more for red, 4 back.
    assert_eq!(records.len(), 10, "{records:#?}");
    ctl.stop().await;
    rig.stop().await;
}

#[tokio::test]
async fn loads_come_back_in_priority_order_staggered() {
    let rig = Rig::start(RED).await;
    let mut settings = rig.controller_settings(four_loads());
    settings.restore_stagger = Duration::from_millis(300);
    let (ctl, mut client) = start_controller(settings).await;
    wait_energized(&rig.relays.channel(), &[2, 3], "the relays").await;

    write_forecast(&rig.forecast_file, GREEN);
    wait_energized(&rig.relays.channel(), &[0, 1], "the relays").await;
    let mut restores: Vec<_> = wait_history(&mut client, "four restores", |h| {
        h.iter().filter(|r| r.to_powered).count() >= 4
    })
    .await
    .into_iter()
    .filter(|r| r.to_powered)
    .collect();
    restores.reverse();
    let order: Vec<&str> = restores.iter().map(|r| r.load.as_str()).collect();
    assert_eq!(
        order,
        ["pump", "heater", "ev", "pool"],
        "most important first"
    );
    for w in restores.windows(2) {
        let gap = ts(&w[1].at).duration_since(ts(&w[0].at));
        assert!(
            gap >= jiff::SignedDuration::from_millis(300),
            "restored {gap:?} apart"
        );
    }
    ctl.stop().await;
    rig.stop().await;
}

fn ts(t: &Option<prost_types::Timestamp>) -> jiff::Timestamp {
    let t = t.as_ref().expect("set");
    jiff::Timestamp::new(t.seconds, t.nanos).expect("valid")
}

fn in_from_now(d: Duration) -> prost_types::Timestamp {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::try_from(d).expect("fits");
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

/// Nobody outside can short-cycle a load: an override waits for the load's
/// minimum off time (and the status says when it acts), a forced one acts
/// at once, and a load's override is set once per 10 s at most.
#[tokio::test]
async fn an_override_waits_for_the_minimum_unless_forced_and_comes_once_per_ten_seconds() {
    let rig = Rig::start(RED).await;
    let mut loads = four_loads();
    for l in &mut loads {
        l.min_off = Duration::from_secs(3600);
    }
    let (ctl, mut client) = start_controller(rig.controller_settings(loads)).await;
    // pump and pool are wired normally-closed: the controller cut them by
    // energising their relays, so it knows since when.
    wait_energized(&rig.relays.channel(), &[2, 3], "the cuts").await;

    let set = |load: &str, force: bool| pb::SetOverrideRequest {
        force,
        load: load.to_owned(),
        powered: true,
        until: Some(in_from_now(Duration::from_secs(7200))),
    };
    client
        .set_override(set("pump", false))
        .await
        .expect("SetOverride pump");
    let status = wait_status(&mut client, "the pump's override waiting", |s| {
        let pump = load_status(s, "pump");
        pump.r#override.is_some() && pump.reason() == pb::Reason::MinOffHold
    })
    .await;
    let pump = load_status(&status, "pump");
    assert!(!pump.desired, "still cut");
    assert!(pump.next_powered, "then powered by the override");
    let acts_at = ts(&pump.next_change_at);
    let wait = acts_at.duration_since(jiff::Timestamp::now());
    assert!(
        wait > jiff::SignedDuration::from_mins(55) && wait <= jiff::SignedDuration::from_mins(60),
        "acts when min_off allows, in {wait:?}"
    );

    // Again within 10 s: refused, and says when.
    let err = client
        .set_override(set("pump", true))
        .await
        .expect_err("too soon");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("one change per 10 s"),
        "{}",
        err.message()
    );

    // Forced, on another load: at once.
    client
        .set_override(set("pool", true))
        .await
        .expect("SetOverride pool");
    wait_energized(
        &rig.relays.channel(),
        &[2],
        "the pool powered at once, the pump still cut",
    )
    .await;
    ctl.stop().await;
    rig.stop().await;
}

#[tokio::test]
async fn an_override_wins_then_expires_or_is_cleared() {
    let rig = Rig::start(RED).await;
    let (ctl, mut client) = start_controller(rig.controller_settings(four_loads())).await;
    wait_energized(&rig.relays.channel(), &[2, 3], "the relays").await;

    // Force the heater on for a moment, in a red hour.
    let set = client
        .set_override(pb::SetOverrideRequest {
            force: false,
            load: "heater".to_owned(),
            powered: true,
            until: Some(in_from_now(Duration::from_millis(1500))),
        })
        .await
        .expect("SetOverride")
        .into_inner();
    assert!(set.r#override.is_some_and(|o| o.powered));
    wait_energized(&rig.relays.channel(), &[0, 2, 3], "the relays").await;
    let status = wait_status(&mut client, "the override", |s| {
        load_status(s, "heater").powered == Some(true)
    })
    .await;
    let heater = load_status(&status, "heater");
    assert_eq!(heater.reason(), pb::Reason::Override);
    assert!(heater.r#override.is_some());
    let plan = client
        .get_plan(pb::GetPlanRequest {
            load: Some("heater".to_owned()),
        })
        .await
        .expect("GetPlan")
        .into_inner();
    assert_eq!(plan.loads.len(), 1);
    assert_eq!(plan.loads[0].intervals[0].reason(), pb::Reason::Override);
    assert_eq!(
        plan.loads[0].intervals[1].reason(),
        pb::Reason::ShedForLevel
    );

    // It expires by itself: cut again.
    wait_energized(&rig.relays.channel(), &[2, 3], "the relays").await;
    let status = wait_status(&mut client, "expiry", |s| {
        load_status(s, "heater").r#override.is_none()
    })
    .await;
    assert_eq!(
        load_status(&status, "heater").reason(),
        pb::Reason::ShedForLevel
    );

    // A long one, cleared by hand.
    client
        .set_override(pb::SetOverrideRequest {
            force: false,
            load: "ev".to_owned(),
            powered: true,
            until: Some(in_from_now(Duration::from_secs(3600))),
        })
        .await
        .expect("SetOverride");
    wait_energized(&rig.relays.channel(), &[1, 2, 3], "the relays").await;
    let cleared = client
        .clear_override(pb::ClearOverrideRequest {
            load: "ev".to_owned(),
        })
        .await
        .expect("ClearOverride")
        .into_inner();
    assert!(cleared.cleared);
    wait_energized(&rig.relays.channel(), &[2, 3], "the relays").await;

    // Bad requests get the right codes.
    let err = client
        .set_override(pb::SetOverrideRequest {
            force: false,
            load: "sauna".to_owned(),
            powered: true,
            until: Some(in_from_now(Duration::from_secs(60))),
        })
        .await
        .expect_err("unknown load");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = client
        .set_override(pb::SetOverrideRequest {
            force: false,
            load: "ev".to_owned(),
            powered: true,
            until: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
        })
        .await
        .expect_err("past");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = client
        .get_plan(pb::GetPlanRequest {
            load: Some("sauna".to_owned()),
        })
        .await
        .expect_err("unknown load");
    assert_eq!(err.code(), tonic::Code::NotFound);
    ctl.stop().await;
    rig.stop().await;
}

#[tokio::test]
async fn a_restarted_or_tampered_relay_service_is_brought_back_into_line() {
    let rig = Rig::start(GREEN).await;
    let (ctl, mut client) = start_controller(rig.controller_settings(four_loads())).await;
    wait_energized(&rig.relays.channel(), &[0, 1], "the relays").await;

    // Someone switches relay 0 off and relay 3 on by hand.
    let mut relays = RelayServiceClient::connect(rig.relays.url())
        .await
        .expect("connect");
    for (channel, energized) in [(0, false), (3, true)] {
        relays
            .set_relay(rpb::SetRelayRequest { channel, energized })
            .await
            .expect("SetRelay");
    }
    wait_energized(&rig.relays.channel(), &[0, 1], "the relays").await;

    // The relay-service restarts with every relay off (as a board that lost
    // power would), on the same address.
    let addr = rig.relays.addr.to_string();
    let relay_state = rig.dir.path().join("relays");
    let Rig {
        dir,
        forecast_file: _,
        relays: old,
        board: _,
        forecast,
    } = rig;
    old.stop().await;
    let (relays, _) = start_relays(&relay_state, OnStart::Off, &addr).await;
    wait_energized(&relays.channel(), &[0, 1], "the relays").await;
    let status = wait_status(&mut client, "reconnected", |s| {
        s.relay_services.iter().all(|r| r.reachable)
    })
    .await;
    assert!(status.loads.iter().all(|l| l.powered == Some(true)));
    ctl.stop().await;
    relays.stop().await;
    forecast.stop().await;
    drop(dir);
}

#[tokio::test]
async fn without_a_forecast_service_each_load_follows_its_fallback() {
    let rig = Rig::start(GREEN).await;
    // Every load powered beforehand (NO energised, NC released).
    let mut relays = RelayServiceClient::connect(rig.relays.url())
        .await
        .expect("connect");
    for channel in [0, 1] {
        relays
            .set_relay(rpb::SetRelayRequest {
                channel,
                energized: true,
            })
            .await
            .expect("SetRelay");
    }
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let nowhere = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);

    let mut loads = four_loads();
    loads[0].when_forecast_unknown = Fallback::Shed; // heater, NO, ch 0
    loads[1].when_forecast_unknown = Fallback::Keep; // ev, NO, ch 1
    loads[2].when_forecast_unknown = Fallback::Shed; // pump, NC, ch 2
    loads[3].when_forecast_unknown = Fallback::Restore; // pool, NC, ch 3
    let settings = controller_settings(
        &rig.dir.path().join("controller"),
        &rig.relays.url(),
        &nowhere,
        loads,
    );
    let (ctl, mut client) = start_controller(settings).await;

    // heater cut (0 released), ev kept (1), pump cut (2 energised), pool on.
    wait_energized(&rig.relays.channel(), &[1, 2], "the relays").await;
    let status = wait_status(&mut client, "fallbacks", |s| {
        load_status(s, "heater").powered == Some(false)
    })
    .await;
    let forecast = status.forecast.expect("forecast state");
    assert!(!forecast.usable);
    assert!(
        forecast.reason.contains("unreachable"),
        "{}",
        forecast.reason
    );
    for l in &status.loads {
        assert_eq!(l.reason(), pb::Reason::ForecastUnknown, "{}", l.name);
    }
    ctl.stop().await;
    rig.stop().await;
}

#[tokio::test]
async fn a_controller_restart_switches_nothing_and_keeps_overrides_and_history() {
    let rig = Rig::start(ORANGE).await;
    let (ctl, mut client) = start_controller(rig.controller_settings(four_loads())).await;
    wait_energized(&rig.relays.channel(), &[1, 2], "the relays").await;
    client
        .set_override(pb::SetOverrideRequest {
            force: false,
            load: "ev".to_owned(),
            powered: false,
            until: Some(in_from_now(Duration::from_secs(3600))),
        })
        .await
        .expect("SetOverride");
    wait_energized(&rig.relays.channel(), &[2], "the relays").await;
    let before = wait_history(&mut client, "the override's switch", |h| {
        h.iter()
            .any(|r| r.load == "ev" && r.reason() == pb::Reason::Override)
    })
    .await;
    ctl.stop().await;

    let (ctl, mut client) = start_controller(rig.controller_settings(four_loads())).await;
    // Once it sees everything, it has made its decisions for now: switches
    // happen before the status is published in the same pass.
    let status = wait_status(&mut client, "settled", |s| {
        s.forecast.as_ref().is_some_and(|f| f.usable)
            && s.relay_services.iter().all(|r| r.reachable)
            && s.loads.iter().all(|l| l.powered == Some(l.desired))
    })
    .await;
    assert_eq!(load_status(&status, "ev").reason(), pb::Reason::Override);
    assert!(load_status(&status, "ev").r#override.is_some());
    let after = history(&mut client).await;
    assert_eq!(after, before, "the restart switched something");
    assert_eq!(energized(&rig.relays.channel()).await, [2]);
    ctl.stop().await;
    rig.stop().await;
}

#[tokio::test]
async fn a_channel_the_relay_service_does_not_have_stops_the_start() {
    let rig = Rig::start(GREEN).await;
    let mut loads = four_loads();
    loads[3].relay.channel = 8;
    let listener = bind("127.0.0.1:0").await;
    let err = delestage_controller::serve(
        rig.controller_settings(loads),
        listener,
        std::future::pending(),
    )
    .await
    .expect_err("channel 8 does not exist");
    let msg = err.to_string();
    assert!(
        msg.contains("test.toml") && msg.contains("load[3]") && msg.contains("0..=7"),
        "{msg}"
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_refused_switch_is_shown_and_does_not_hold_up_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["relays", "forecast", "controller"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    let forecast_file = dir.path().join("forecast/ecowatt.json");
    write_forecast(&forecast_file, GREEN);
    // A wear guard of two switches per minute per relay.
    let (relays, _) = start_relays_with(
        &dir.path().join("relays"),
        OnStart::Restore,
        "127.0.0.1:0",
        2,
    )
    .await;
    let forecast = start_forecast(&forecast_file, &dir.path().join("forecast")).await;
    let settings = controller_settings(
        &dir.path().join("controller"),
        &relays.url(),
        &forecast.url(),
        four_loads(),
    );
    let (ctl, mut client) = start_controller(settings).await;

    // heater (NO, ch 0): on at start (1), off at orange (2), refused when
    // green comes back. pump (NC, ch 2): energised at orange (1), released
    // at green (2): not held up by the heater.
    wait_energized(&relays.channel(), &[0, 1], "the relays").await;
    write_forecast(&forecast_file, ORANGE);
    wait_energized(&relays.channel(), &[1, 2], "the relays").await;
    write_forecast(&forecast_file, GREEN);
    wait_energized(&relays.channel(), &[1], "the relays").await;
    let status = wait_status(&mut client, "the refusal", |s| {
        !load_status(s, "heater").error.is_empty()
    })
    .await;
    let heater = load_status(&status, "heater");
    assert!(heater.desired);
    assert_eq!(heater.powered, Some(false));
    assert!(
        heater.error.contains("next switch allowed"),
        "{}",
        heater.error
    );
    assert_eq!(load_status(&status, "pump").powered, Some(true));
    assert!(load_status(&status, "pump").error.is_empty());
    ctl.stop().await;
    relays.stop().await;
    forecast.stop().await;
}

#[tokio::test]
async fn watchers_see_the_status_then_every_switch() {
    use tokio_stream::StreamExt;
    let rig = Rig::start(GREEN).await;
    let (ctl, mut client) = start_controller(rig.controller_settings(four_loads())).await;
    wait_energized(&rig.relays.channel(), &[0, 1], "the relays").await;
    wait_status(&mut client, "settled", |s| {
        s.loads.iter().all(|l| l.powered == Some(true))
    })
    .await;

    let mut events = client
        .watch_events(pb::WatchEventsRequest {})
        .await
        .expect("WatchEvents")
        .into_inner();
    let mut statuses = client
        .watch_status(pb::WatchStatusRequest {})
        .await
        .expect("WatchStatus")
        .into_inner();
    let next = |e: Option<Result<pb::WatchEventsResponse, tonic::Status>>| {
        e.expect("stream open").expect("event").event.expect("set")
    };
    let first = next(
        tokio::time::timeout(BOUND, events.next())
            .await
            .expect("in time"),
    );
    assert!(matches!(first, pb::watch_events_response::Event::Status(_)));
    let status = tokio::time::timeout(BOUND, statuses.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("status");
    assert!(status.status.is_some_and(|s| s.loads.len() == 4));

    write_forecast(&rig.forecast_file, ORANGE);
    let mut switched = Vec::new();
    let mut changed = Vec::new();
    while switched.len() < 2 {
        match next(
            tokio::time::timeout(BOUND, events.next())
                .await
                .expect("in time"),
        ) {
            // The start's restores may still arrive: an event follows its
            // history record's durable write, which can come after the
            // relays (and so the status) already show the switch.
            pb::watch_events_response::Event::Switched(r) if r.to_powered => {}
            pb::watch_events_response::Event::Switched(r) => {
                switched.push((r.load.clone(), r.to_powered, r.reason()))
            }
            pb::watch_events_response::Event::LoadChanged(l) => changed.push(l.name),
            pb::watch_events_response::Event::Status(_) => {}
        }
    }
    switched.sort();
    assert_eq!(
        switched,
        [
            ("heater".to_owned(), false, pb::Reason::ShedForLevel),
            ("pump".to_owned(), false, pb::Reason::ShedForLevel)
        ]
    );
    // The status stream moved on too.
    let later = tokio::time::timeout(BOUND, async {
        loop {
            let s = statuses
                .next()
                .await
                .expect("open")
                .expect("status")
                .status
                .expect("set");
            if s.level() == delestage_proto::forecast::v1::SignalLevel::Orange {
                return s;
            }
        }
    })
    .await
    .expect("an orange status in time");
    assert_eq!(load_status(&later, "ev").reason(), pb::Reason::Normal);
    ctl.stop().await;
    // Streams end with the service (after what was already sent).
    tokio::time::timeout(BOUND, async {
        while let Some(Ok(_)) = events.next().await {}
    })
    .await
    .expect("the stream ends in time");
    rig.stop().await;
}

#[tokio::test]
async fn a_relay_whose_state_the_board_does_not_hold_is_unknown_and_says_why() {
    let rig = Rig::start(GREEN).await;
    let (ctl, mut client) = start_controller(rig.controller_settings(four_loads())).await;
    wait_status(&mut client, "every load known", |s| {
        s.loads.len() == 4 && s.loads.iter().all(|l| l.powered.is_some())
    })
    .await;

    // Unplugged: the relays' states are no longer held (applied: false).
    let board = rig.board.clone();
    board.unplug();
    let status = wait_status(&mut client, "every load unknown", |s| {
        s.loads.iter().all(|l| l.powered.is_none())
    })
    .await;
    for load in &status.loads {
        assert!(
            load.error.contains("not attached"),
            "{}: {:?}",
            load.name,
            load.error
        );
    }

    // Back: re-applied, known again, nothing switched by the controller.
    let switches_before = history(&mut client).await.len();
    board.plug();
    wait_status(&mut client, "every load known again", |s| {
        s.loads
            .iter()
            .all(|l| l.powered == Some(l.desired) && l.error.is_empty())
    })
    .await;
    assert_eq!(history(&mut client).await.len(), switches_before);
    ctl.stop().await;
    rig.stop().await;
}
