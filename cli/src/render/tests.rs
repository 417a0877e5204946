use super::*;
use delestage_proto::controller::v1 as cpb;

/// `now` (RFC 3339), read in Paris.
fn paris(now: &str) -> Clock {
    Clock::new(now.parse().expect("ts"), PARIS.clone())
}

fn ts(s: &str) -> prost_types::Timestamp {
    let t: Timestamp = s.parse().expect("ts");
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: 0,
    }
}

fn status() -> cpb::ControllerStatus {
    cpb::ControllerStatus {
        at: Some(ts("2026-12-08T17:00:00Z")),
        level: SignalLevel::Red.into(),
        forecast: Some(cpb::ForecastState {
            usable: true,
            fetched_at: Some(ts("2026-12-08T16:50:00Z")),
            reason: String::new(),
            generated_at: Some(ts("2026-12-08T16:40:00Z")),
            forecast_service_reachable: true,
            ..Default::default()
        }),
        loads: vec![cpb::LoadStatus {
            name: "water-heater".to_owned(),
            relay: Some(cpb::RelayAddress {
                relay_service: "garage".to_owned(),
                channel: 0,
            }),
            desired: false,
            powered: Some(false),
            reason: cpb::Reason::ShedForLevel.into(),
            reason_level: SignalLevel::Red.into(),
            next_change_at: Some(ts("2026-12-08T19:00:00Z")),
            next_powered: true,
            ..Default::default()
        }],
        relay_services: vec![cpb::RelayServiceStatus {
            name: "garage".to_owned(),
            endpoint: "http://127.0.0.1:50051".to_owned(),
            reachable: true,
            board_attached: true,
            error: String::new(),
        }],
        meter: None,
        power_saved_w: None,
        kept_off_today_wh: 0,
    }
}

#[test]
fn status_text_shows_the_meters_power_and_where_tempo_comes_from() {
    let mut s = status();
    if let Some(f) = s.forecast.as_mut() {
        f.tempo_today = fpb::TempoColor::Blue.into();
        f.tempo_tomorrow = fpb::TempoColor::Red.into();
        f.tempo_source = cpb::TempoSource::Meter.into();
    }
    s.meter = Some(cpb::MeterState {
        relay_service: "garage".to_owned(),
        reading: true,
        apparent_power_va: 2300,
        subscribed_va: 9000,
        ..Default::default()
    });
    let text = status_text(&s, Paint { enabled: false }, &paris("2026-12-08T17:00:00Z"));
    assert!(
        text.contains("Tempo: today blue, tomorrow red (from the Linky meter)"),
        "{text}"
    );
    assert!(
        text.contains("Power: 2300 VA of 9000 VA subscribed (Linky on garage)"),
        "{text}"
    );
    s.loads[0].measured_va = Some(2980);
    s.loads[0].measured_samples = 4;
    s.power_saved_w = Some(3000);
    let text = status_text(&s, Paint { enabled: false }, &paris("2026-12-08T17:00:00Z"));
    assert!(text.contains("; cut loads save ~3000 W"), "{text}");
    assert!(text.contains("  measured: ~2980 W (4 samples)"), "{text}");
    s.meter = Some(cpb::MeterState {
        relay_service: "garage".to_owned(),
        problem: "no reading since 2026-12-08T16:58:00Z".to_owned(),
        ..Default::default()
    });
    let text = status_text(&s, Paint { enabled: false }, &paris("2026-12-08T17:00:00Z"));
    assert!(
        text.contains("Power: unknown (Linky on garage: no reading since"),
        "{text}"
    );
}

#[test]
fn meter_text_gives_power_colours_id_mode_counts_and_age() {
    let r = delestage_proto::meter::v1::MeterReading {
        at: Some(ts("2026-12-08T16:59:58Z")),
        apparent_power_va: 2300,
        subscribed_va: 9000,
        tariff_period: "HPJB".to_owned(),
        tempo_today: fpb::TempoColor::Blue.into(),
        tempo_tomorrow: fpb::TempoColor::Red.into(),
        meter_id: "041876097523".to_owned(),
        mode: delestage_proto::meter::v1::MeterMode::Historic.into(),
        frames_ok: 42,
        frames_bad: 1,
        ..Default::default()
    };
    let text = meter_text(&r, Paint { enabled: false }, &paris("2026-12-08T17:00:00Z"));
    for words in [
        "Power 2300 VA of 9000 VA subscribed (25%)",
        "Tariff period HPJB",
        "Tempo today blue, tomorrow red",
        "Meter 041876097523 (historic mode), read at 17:59 (2 s ago); frames 42 ok, 1 bad",
    ] {
        assert!(text.contains(words), "{words:?} in:\n{text}");
    }
}

#[test]
fn status_text_says_what_why_and_next_without_colour_codes() {
    let text = status_text(
        &status(),
        Paint { enabled: false },
        &paris("2026-12-08T17:00:00Z"),
    );
    assert!(text.contains("Grid now: RED"), "{text}");
    assert!(
        text.contains("water-heater") && text.contains("garage:0"),
        "{text}"
    );
    assert!(text.contains("shed: red hour"), "{text}");
    assert!(text.contains("on at"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no escape codes when colour is off"
    );
    let coloured = status_text(
        &status(),
        Paint { enabled: true },
        &paris("2026-12-08T17:00:00Z"),
    );
    assert!(coloured.contains('\u{1b}'));
}

#[test]
fn status_json_has_stable_names() {
    let v = status_json(&status());
    assert_eq!(v["level"], "red");
    assert_eq!(v["loads"][0]["reason"], "shed_for_level");
    assert_eq!(v["loads"][0]["relay"], "garage:0");
    assert_eq!(v["loads"][0]["powered"], false);
    assert_eq!(v["loads"][0]["next_powered"], true);
    assert_eq!(v["relay_services"][0]["reachable"], true);
}

#[test]
fn the_plan_timeline_marks_cut_hours() {
    let plan = cpb::GetPlanResponse {
        computed_at: Some(ts("2026-12-08T16:00:00Z")),
        loads: vec![cpb::LoadPlan {
            budget: None,
            load: "heater".to_owned(),
            intervals: vec![
                cpb::PlanInterval {
                    start: Some(ts("2026-12-08T16:00:00Z")),
                    end: Some(ts("2026-12-08T17:00:00Z")),
                    powered: true,
                    reason: cpb::Reason::Normal.into(),
                    level: 0,
                    tempo_color: 0,
                },
                cpb::PlanInterval {
                    start: Some(ts("2026-12-08T17:00:00Z")),
                    end: Some(ts("2026-12-08T19:00:00Z")),
                    powered: false,
                    reason: cpb::Reason::ShedForLevel.into(),
                    level: SignalLevel::Red.into(),
                    tempo_color: 0,
                },
            ],
        }],
    };
    let text = plan_text(
        &plan,
        &[],
        &[],
        Paint { enabled: false },
        &paris("2026-12-08T16:00:00Z"),
    );
    assert!(text.contains("heater  █░░"), "{text}");
    assert!(text.contains("shed: red hour"), "{text}");
    assert!(
        !text.contains("Tempo  "),
        "no Tempo row without Tempo days: {text}"
    );
}

#[test]
fn the_plan_marks_tempo_peak_hours_and_says_why_in_both_forms() {
    let plan = cpb::GetPlanResponse {
        computed_at: Some(ts("2026-12-08T16:00:00Z")),
        loads: vec![cpb::LoadPlan {
            budget: None,
            load: "heater".to_owned(),
            intervals: vec![
                cpb::PlanInterval {
                    start: Some(ts("2026-12-08T16:00:00Z")),
                    end: Some(ts("2026-12-08T21:00:00Z")),
                    powered: false,
                    reason: cpb::Reason::ShedForTempo.into(),
                    level: 0,
                    tempo_color: fpb::TempoColor::Red.into(),
                },
                cpb::PlanInterval {
                    start: Some(ts("2026-12-08T21:00:00Z")),
                    end: Some(ts("2026-12-08T23:00:00Z")),
                    powered: true,
                    reason: cpb::Reason::Normal.into(),
                    level: 0,
                    tempo_color: 0,
                },
            ],
        }],
    };
    let red_day = fpb::TempoDay {
        date: "2026-12-08".to_owned(),
        color: fpb::TempoColor::Red.into(),
        start: Some(ts("2026-12-08T05:00:00Z")),
        end: Some(ts("2026-12-09T05:00:00Z")),
        peak_end: Some(ts("2026-12-08T21:00:00Z")),
    };
    let text = plan_text(
        &plan,
        &[],
        std::slice::from_ref(&red_day),
        Paint { enabled: false },
        &paris("2026-12-08T16:00:00Z"),
    );
    // Five red peak hours, then off-peak.
    assert!(text.contains("RRRRR  "), "{text}");
    assert!(text.contains("shed: red Tempo day, peak hours"), "{text}");
    let v = plan_json(&plan, &[red_day]);
    assert_eq!(v["loads"][0]["intervals"][0]["reason"], "shed_for_tempo");
    assert_eq!(v["loads"][0]["intervals"][0]["tempo_color"], "red");
    assert_eq!(v["tempo_peaks"][0]["color"], "red");
    assert_eq!(v["tempo_peaks"][0]["peak_end"], "2026-12-08T21:00:00Z");
}

#[test]
fn relays_say_the_board_version_and_its_hardware_failsafe() {
    use delestage_proto::relay::v1 as rpb;
    let answer = |failsafe: rpb::HardwareFailsafe| rpb::GetRelaysResponse {
        relays: Vec::new(),
        board: Some(rpb::Board {
            kind: rpb::BoardKind::Phidget1017.into(),
            serial_number: 424242,
            attached: true,
            channel_count: 8,
            description: "Phidget InterfaceKit 0/0/8 (1017), serial 424242".to_owned(),
            version: 200,
            hardware_failsafe: failsafe.into(),
        }),
    };
    let now = paris("2026-12-08T17:00:00Z");
    let plain = Paint { enabled: false };
    let text = relays_text(&answer(rpb::HardwareFailsafe::Armed), plain, &now);
    assert!(
        text.contains("attached, version 200, hardware failsafe armed"),
        "{text}"
    );
    let text = relays_text(&answer(rpb::HardwareFailsafe::Unsupported), plain, &now);
    assert!(text.contains("hardware failsafe UNSUPPORTED"), "{text}");
    let text = relays_text(&answer(rpb::HardwareFailsafe::Tripped), plain, &now);
    assert!(text.contains("hardware failsafe TRIPPED"), "{text}");
    let text = relays_text(&answer(rpb::HardwareFailsafe::Off), plain, &now);
    assert!(
        !text.contains("failsafe"),
        "nothing to say when off: {text}"
    );

    let json = delestage_proto::json::relays_json(&answer(rpb::HardwareFailsafe::Armed));
    assert_eq!(json["board"]["version"], 200);
    assert_eq!(json["board"]["hardware_failsafe"], "armed");
}

#[test]
fn a_time_in_another_year_shows_its_year() {
    let clock = paris("2026-12-08T17:00:00Z");
    let at = |s: &str| s.parse::<Timestamp>().expect("ts");
    assert_eq!(clock.show(at("2026-12-08T19:00:00Z")), "20:00");
    assert_eq!(clock.show(at("2026-12-10T19:00:00Z")), "Thu 10 20:00");
    assert_eq!(clock.show(at("2027-03-10T19:00:00Z")), "2027-03-10 20:00");
}

#[test]
fn times_are_paris_times_unless_another_zone_is_asked_for() {
    let at = |s: &str| s.parse::<Timestamp>().expect("ts");
    let clock = paris("2026-12-08T17:00:00Z");
    assert_eq!(clock.show(at("2026-12-08T11:31:00Z")), "12:31");
    assert_eq!(clock.other_zone(), None);
    let tokyo = Clock::new(
        at("2026-12-08T10:00:00Z"),
        TimeZone::fixed(jiff::tz::offset(9)),
    );
    assert_eq!(tokyo.show(at("2026-12-08T11:31:00Z")), "20:31");
    assert_eq!(tokyo.other_zone().as_deref(), Some("a fixed offset"));
}

#[test]
fn an_override_that_waits_for_the_minimum_says_when_it_acts() {
    let mut s = status();
    let load = &mut s.loads[0];
    // Cut for red, min_off running: the override to power it acts at 17:20.
    load.desired = false;
    load.reason = cpb::Reason::MinOffHold.into();
    load.next_change_at = Some(ts("2026-12-08T17:20:00Z"));
    load.next_powered = true;
    load.r#override = Some(cpb::Override {
        powered: true,
        until: Some(ts("2026-12-08T19:00:00Z")),
        ..Default::default()
    });
    let text = status_text(&s, Paint { enabled: false }, &paris("2026-12-08T17:00:00Z"));
    assert!(
        text.contains("override: on at 18:20 (min_off) until 20:00"),
        "{text}"
    );
}
