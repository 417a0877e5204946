//! Tempo end to end (issue 14): forecast-service reads a Tempo calendar,
//! the controller cuts a `shed_on_tempo = "red"` load in the peak hours of
//! red days, 06:00 to 22:00 Paris time, and only then.

use cpb::controller_service_client::ControllerServiceClient;
use delestage_ecowatt_standin::tempo::tempo_body_around_now;
use delestage_proto::controller::v1 as cpb;
use delestage_proto::forecast::v1 as fpb;
use delestage_tests::{
    energized, load_status, start_controller, start_forecast_on_file, start_relay, wait_status,
};
use jiff::Timestamp;

static PARIS: jiff::tz::TimeZone = jiff::tz::get!("Europe/Paris");

fn ts(t: &Option<prost_types::Timestamp>) -> Timestamp {
    let t = t.as_ref().expect("timestamp set");
    Timestamp::new(t.seconds, t.nanos).expect("valid")
}

/// `hour`:00 Paris time on today + `offset` days.
fn paris(offset: i64, hour: i8) -> Timestamp {
    let today = Timestamp::now().to_zoned_datetime(PARIS.clone()).date();
    today
        .checked_add(jiff::Span::new().days(offset))
        .expect("date")
        .at(hour, 0, 0, 0)
        .to_zoned_datetime(PARIS.clone())
        .expect("time")
        .timestamp()
}

#[tokio::test]
async fn a_red_tempo_day_cuts_its_load_from_six_to_ten_pm_paris_time_and_only_then() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A green Ecowatt forecast: nothing to shed there.
    let ecowatt = dir.path().join("forecast.json");
    delestage_tests::write_forecast(&ecowatt, 1);
    // Yesterday blue, today and tomorrow red: whatever the hour, the plan
    // holds a red peak and off-peak hours around it.
    let tempo = dir.path().join("tempo.json");
    std::fs::write(&tempo, tempo_body_around_now("BLUE", "RED", Some("RED"))).expect("write");
    let forecast = start_forecast_on_file(
        &ecowatt,
        &dir.path().join("forecast"),
        &[
            "--tempo",
            "file",
            "--tempo-file",
            tempo.to_str().expect("utf-8"),
        ],
    )
    .await;
    let (relay, relay_channel) = start_relay(&dir.path().join("relay"), &[]).await;
    let config = format!(
        "forecast = \"http://{}\"\nstate_dir = \"{}\"\n[relays.a]\nendpoint = \"http://{}\"\n\
         [[load]]\nname = \"heater\"\nrelay = \"a:0\"\nwiring = \"normally-closed\"\nshed_on_tempo = \"red\"\n\
         [[load]]\nname = \"ev\"\nrelay = \"a:1\"\nwiring = \"normally-closed\"\nshed_at = \"red\"\n",
        forecast.addr,
        dir.path().join("ctl").display(),
        relay.addr
    );
    let (_controller, channel) = start_controller(dir.path(), &config).await;
    let mut client = ControllerServiceClient::new(channel);

    let now = Timestamp::now();
    let peaks = [(paris(0, 6), paris(0, 22)), (paris(1, 6), paris(1, 22))];
    let in_peak = |t: Timestamp| peaks.iter().any(|(s, e)| *s <= t && t < *e);
    let cut_now = in_peak(now);

    // The status shows both colours, and the relays follow the plan now.
    let status = wait_status(&mut client, "Tempo known and the relays settled", |s| {
        let f = s.forecast.clone().unwrap_or_default();
        f.tempo_today() == fpb::TempoColor::Red
            && f.tempo_tomorrow() == fpb::TempoColor::Red
            && s.loads.iter().all(|l| l.powered == Some(l.desired))
    })
    .await;
    let heater = load_status(&status, "heater");
    if heater.desired == cut_now {
        // The hour turned between `now` and the pass: the plan decides.
        assert!(in_peak(Timestamp::now()) != cut_now, "heater: {heater:?}");
    } else if cut_now {
        assert_eq!(heater.reason(), cpb::Reason::ShedForTempo);
        assert_eq!(heater.tempo_color(), fpb::TempoColor::Red);
        assert_eq!(heater.shed_on_tempo(), fpb::TempoColor::Red);
        assert_eq!(energized(&relay_channel).await, vec![0]);
    } else {
        assert_eq!(heater.reason(), cpb::Reason::Normal);
        assert_eq!(energized(&relay_channel).await, Vec::<u32>::new());
    }
    assert!(
        load_status(&status, "ev").desired,
        "green Ecowatt: ev stays on"
    );

    // The plan: cut exactly in the red peak hours, powered otherwise.
    let plan = client
        .get_plan(cpb::GetPlanRequest {
            load: Some("heater".to_owned()),
        })
        .await
        .expect("plan")
        .into_inner();
    let intervals = &plan.loads[0].intervals;
    let start = ts(&intervals[0].start);
    let end = ts(&intervals.last().expect("intervals").end);
    assert!(
        end >= paris(2, 6),
        "the plan reaches the end of tomorrow's tariff day"
    );
    for i in intervals {
        let (s, e) = (ts(&i.start), ts(&i.end));
        if i.powered {
            assert!(
                !peaks.iter().any(|(ps, pe)| s < *pe && *ps < e),
                "powered during a red peak: {i:?}"
            );
        } else {
            assert_eq!(i.reason(), cpb::Reason::ShedForTempo, "{i:?}");
            assert_eq!(i.tempo_color(), fpb::TempoColor::Red);
            assert!(
                peaks.iter().any(|(ps, pe)| *ps <= s && e <= *pe),
                "cut outside the red peak hours: {i:?}"
            );
        }
    }
    // Every red peak hour ahead is cut, to the minute.
    for (ps, pe) in peaks {
        let from = ps.max(start);
        if from >= pe {
            continue;
        }
        let cut: Vec<_> = intervals
            .iter()
            .filter(|i| !i.powered && ts(&i.start) < pe && from < ts(&i.end))
            .collect();
        assert_eq!(cut.len(), 1, "{intervals:?}");
        assert_eq!((ts(&cut[0].start), ts(&cut[0].end)), (from, pe));
    }
}
