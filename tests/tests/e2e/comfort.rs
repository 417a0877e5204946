//! Comfort and scheduling end to end (issue 15), with the real
//! forecast-service, relay-service and controller: a daily runtime
//! (`run_daily` in a `run_window`) runs, is recorded, and does not run again
//! after a restart; a load cut past its `max_off` gets a comfort run; and a
//! restore after a tense period waits for the `[policy] restore_jitter`,
//! the same delay after a restart.

use std::path::Path;

use cpb::controller_service_client::ControllerServiceClient;
use delestage_ecowatt_standin::body_around_now_by_hour;
use delestage_proto::controller::v1 as cpb;
use delestage_tests::{
    BOUND, binary, load_status, start_controller, start_controller_on, start_forecast_on_file,
    start_relay, wait_history, wait_status, write_forecast,
};
use jiff::{SignedDuration, Timestamp};
use nix::sys::signal::Signal;
use tonic::transport::Channel;

static PARIS: jiff::tz::TimeZone = jiff::tz::get!("Europe/Paris");

fn ts(t: &Option<prost_types::Timestamp>) -> Timestamp {
    let t = t.as_ref().expect("timestamp set");
    Timestamp::new(t.seconds, t.nanos).expect("valid")
}

fn paris_date(t: Timestamp) -> jiff::civil::Date {
    t.to_zoned_datetime(PARIS.clone()).date()
}

/// `delestage ARGS` against the controller at `addr`: its stdout.
async fn cli(addr: &str, args: &[&str]) -> String {
    let url = format!("http://{addr}");
    let out = tokio::time::timeout(
        BOUND,
        tokio::process::Command::new(binary("delestage"))
            .args(["--controller", &url])
            .args(args)
            .output(),
    )
    .await
    .expect("exits in time")
    .expect("runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The ev's planned restore: when it comes back, and the end of the cut
/// before it (the jitter is the difference).
async fn ev_restore(client: &mut ControllerServiceClient<Channel>) -> (Timestamp, Timestamp) {
    let plan = client
        .get_plan(cpb::GetPlanRequest {
            load: Some("ev".to_owned()),
        })
        .await
        .expect("plan")
        .into_inner();
    let intervals = &plan.loads[0].intervals;
    let shed = intervals
        .iter()
        .rposition(|i| i.reason() == cpb::Reason::ShedForLevel)
        .unwrap_or_else(|| panic!("a shed in the plan: {intervals:?}"));
    let back = intervals[shed..]
        .iter()
        .find(|i| i.powered)
        .unwrap_or_else(|| panic!("a restore after the shed: {intervals:?}"));
    for between in &intervals[shed + 1..] {
        if between.powered {
            break;
        }
        assert_eq!(
            between.reason(),
            cpb::Reason::RestoreJitter,
            "{intervals:?}"
        );
    }
    assert_eq!(back.reason(), cpb::Reason::Normal, "{intervals:?}");
    (ts(&intervals[shed].end), ts(&back.start))
}

async fn restart(
    controller: delestage_tests::ServiceProcess,
    config: &Path,
) -> (
    delestage_tests::ServiceProcess,
    ControllerServiceClient<Channel>,
) {
    controller.stop_with(Signal::SIGTERM).await;
    let (controller, channel) = start_controller_on(config).await;
    (controller, ControllerServiceClient::new(channel))
}

#[tokio::test]
async fn a_daily_runtime_a_comfort_limit_and_the_restore_jitter_with_real_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Timestamp::now();
    // Green everywhere: every hour as good as another for the pump, so its
    // runtime goes to the start of its window, now.
    let ecowatt = dir.path().join("forecast.json");
    write_forecast(&ecowatt, 1);
    let forecast = start_forecast_on_file(&ecowatt, &dir.path().join("forecast"), &[]).await;
    let (relay, _relay_channel) = start_relay(&dir.path().join("relay"), &[]).await;
    let hour = started.to_zoned_datetime(PARIS.clone()).hour();
    let window = format!("{:02}:00-{:02}:00", hour, (hour + 2) % 24);
    let config = format!(
        "forecast = \"http://{}\"\nstate_dir = \"{}\"\n\
         [policy]\nrestore_stagger = \"0s\"\nrestore_jitter = \"5m\"\n\
         [relays.a]\nendpoint = \"http://{}\"\n\
         [[load]]\nname = \"pump\"\nrelay = \"a:0\"\nwiring = \"normally-closed\"\nrun_daily = \"10s\"\nrun_window = [\"{window}\"]\n\
         [[load]]\nname = \"heater\"\nrelay = \"a:1\"\nwiring = \"normally-closed\"\nshed_at = \"orange\"\nmax_off = \"5s\"\n\
         [[load]]\nname = \"ev\"\nrelay = \"a:2\"\nwiring = \"normally-closed\"\nshed_at = \"orange\"\n",
        forecast.addr,
        dir.path().join("ctl").display(),
        relay.addr
    );
    let (controller, channel) = start_controller(dir.path(), &config).await;
    let config_path = dir.path().join("controller.toml");
    let mut client = ControllerServiceClient::new(channel);
    let addr = controller.addr_of("controller listening").await;

    // 1. The pump runs its 10 s now, then is cut for the rest of the day.
    let status = wait_status(&mut client, "the pump planned", |s| {
        s.loads
            .iter()
            .any(|l| l.name == "pump" && l.budget.is_some())
    })
    .await;
    let pump = load_status(&status, "pump");
    assert!(
        matches!(
            pump.reason(),
            cpb::Reason::ScheduledRun | cpb::Reason::BudgetMet
        ),
        "{pump:?}"
    );
    let budget = pump.budget.clone().expect("budget");
    assert_eq!(budget.windows, std::slice::from_ref(&window));
    let records = wait_history(&mut client, "the pump's budget met", |r| {
        r.iter()
            .any(|r| r.load == "pump" && !r.to_powered && r.reason() == cpb::Reason::BudgetMet)
    })
    .await;
    assert!(
        !records.iter().any(|r| r.load == "heater" || r.load == "ev"),
        "green: nothing else switched: {records:?}"
    );
    let text = cli(&addr, &["status"]).await;
    assert!(text.contains("Daily runtime:"), "{text}");
    assert!(text.contains("pump 10s/day: "), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&cli(&addr, &["plan", "--json"]).await).expect("json");
    let summary = json["loads"][0]["budget"]["summary"]
        .as_str()
        .unwrap_or_else(|| panic!("a budget summary: {json}"));
    assert!(summary.starts_with("pump 10s/day: "), "{summary}");
    assert_eq!(json["loads"][0]["budget"]["run_daily_seconds"], 10);

    // 2. A restart does not run it again: the history has today's 10 s.
    let (controller, mut client) = restart(controller, &config_path).await;
    let status = wait_status(&mut client, "the pump known after the restart", |s| {
        s.loads
            .iter()
            .any(|l| l.name == "pump" && l.powered.is_some())
    })
    .await;
    let pump = load_status(&status, "pump");
    if paris_date(Timestamp::now()) == paris_date(started) {
        assert_eq!(pump.reason(), cpb::Reason::BudgetMet, "{pump:?}");
        assert_eq!(pump.powered, Some(false), "{pump:?}");
        let done = pump.budget.as_ref().and_then(|b| b.done).expect("done");
        assert!(done.seconds >= 10, "{done:?}");
    } // else: midnight passed during the test, and a new day has a new budget.

    // 3. Orange until the end of the next hour, green after.
    let now = Timestamp::now();
    let this_hour = now
        .to_zoned_datetime(PARIS.clone())
        .with()
        .minute(0)
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .expect("hour")
        .timestamp();
    let calm_from = this_hour + SignedDuration::from_hours(2);
    let body = body_around_now_by_hour(|t| if t < calm_from { 2 } else { 1 });
    let tmp = ecowatt.with_extension("tmp");
    std::fs::write(&tmp, body).expect("write");
    std::fs::rename(&tmp, &ecowatt).expect("rename");

    // The heater is cut, and after its max_off of 5 s, powered again for
    // a comfort run.
    let records = wait_history(&mut client, "the heater's comfort run", |r| {
        r.iter()
            .any(|r| r.load == "heater" && r.to_powered && r.reason() == cpb::Reason::ComfortLimit)
    })
    .await;
    let heater: Vec<_> = records
        .iter()
        .filter(|r| r.load == "heater")
        .rev()
        .collect();
    assert_eq!(heater[0].reason(), cpb::Reason::ShedForLevel, "{heater:?}");
    let cut_for = ts(&heater[1].at).duration_since(ts(&heater[0].at));
    assert!(
        cut_for >= SignedDuration::from_secs(5) && cut_for < SignedDuration::from_secs(15),
        "cut for {cut_for:?}"
    );
    let status = wait_status(&mut client, "the heater on a comfort run", |s| {
        s.loads.iter().any(|l| {
            l.name == "heater" && l.reason() == cpb::Reason::ComfortLimit && l.powered == Some(true)
        })
    })
    .await;
    assert!(load_status(&status, "heater").max_off.is_some());

    // The ev is cut, and comes back after the orange hours plus this
    // controller's jitter for the day: at most 5 min, and the same after
    // a restart.
    wait_status(&mut client, "the ev cut", |s| {
        s.loads
            .iter()
            .any(|l| l.name == "ev" && l.powered == Some(false))
    })
    .await;
    let (calm, back) = ev_restore(&mut client).await;
    let jitter = back.duration_since(calm);
    assert!(
        jitter >= SignedDuration::ZERO && jitter <= SignedDuration::from_mins(5),
        "restored {jitter:?} after the orange hours"
    );
    let (_controller, mut client) = restart(controller, &config_path).await;
    wait_status(&mut client, "the ev known after the restart", |s| {
        s.loads
            .iter()
            .any(|l| l.name == "ev" && l.powered == Some(false))
    })
    .await;
    assert_eq!(ev_restore(&mut client).await, (calm, back));
}
