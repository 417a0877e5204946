//! `delestage` as a user runs it: `delestage demo` as a process, and the
//! client commands against it, in text and JSON.

use std::process::Output;

use delestage_tests::{BOUND, ServiceProcess, binary, start_demo};
use nix::sys::signal::Signal;

struct Demo {
    process: ServiceProcess,
    env: Vec<(&'static str, String)>,
}

impl Demo {
    async fn start() -> Self {
        let process = start_demo().await;
        let relay = process.addr_of("relay-service listening").await;
        let forecast = process.addr_of("forecast-service listening").await;
        let controller = process.addr_of("controller listening").await;
        for (addr, service) in [
            (&relay, "delestage.relay.v1.RelayService"),
            (&forecast, "delestage.forecast.v1.ForecastService"),
            (&controller, "delestage.controller.v1.ControllerService"),
        ] {
            ServiceProcess::wait_serving_at(addr, service).await;
        }
        Self {
            process,
            env: vec![
                ("DELESTAGE_RELAY", format!("http://{relay}")),
                ("DELESTAGE_FORECAST", format!("http://{forecast}")),
                ("DELESTAGE_CONTROLLER", format!("http://{controller}")),
            ],
        }
    }

    async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(
            BOUND,
            tokio::process::Command::new(binary("delestage"))
                .args(args)
                .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
                .output(),
        )
        .await
        .expect("exits in time")
        .expect("runs")
    }

    async fn text(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.text(&all).await).expect("one JSON document")
    }
}

#[tokio::test]
async fn the_demo_runs_and_every_command_answers() {
    let demo = Demo::start().await;

    // Status: the four example loads, on a usable (rebased) forecast.
    let deadline = std::time::Instant::now() + BOUND;
    let status = loop {
        let status = demo.json(&["status"]).await;
        let known = status["loads"]
            .as_array()
            .is_some_and(|l| l.len() == 4 && l.iter().all(|l| l["powered"].is_boolean()));
        let tempo = status["forecast"]["tempo_tomorrow"] != "unknown";
        if known && tempo && status["forecast"]["usable"] == true {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // At any hour, the night too: the rebased sandbox covers all of today.
    for load in status["loads"].as_array().expect("loads") {
        assert_ne!(load["reason"], "forecast_unknown", "{load}");
    }
    let names: Vec<&str> = status["loads"]
        .as_array()
        .expect("loads")
        .iter()
        .map(|l| l["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["water-heater", "ev-charger", "heat-pump", "pool-pump"]
    );
    let text = demo.text(&["status"]).await;
    assert!(
        text.contains("water-heater") && text.contains("garage:0"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no colour when stdout is not a terminal"
    );

    let plan = demo.json(&["plan"]).await;
    assert_eq!(plan["loads"].as_array().map(Vec::len), Some(4));
    let one = demo.text(&["plan", "heat-pump"]).await;
    assert!(
        one.contains("heat-pump") && !one.contains("pool-pump"),
        "{one}"
    );
    let forecast = demo.json(&["forecast"]).await;
    assert_eq!(forecast["source"], "file");
    assert_eq!(forecast["days"].as_array().map(Vec::len), Some(4));
    // The bundled Tempo calendar, moved to this week: today white,
    // tomorrow red; the status says so, and the plan marks their peaks.
    let colors: Vec<&str> = forecast["tempo"]["days"]
        .as_array()
        .expect("tempo days")
        .iter()
        .map(|d| d["color"].as_str().expect("color"))
        .collect();
    assert_eq!(colors, ["blue", "white", "red"], "{forecast}");
    assert_eq!(status["forecast"]["tempo_today"], "white");
    assert_eq!(status["forecast"]["tempo_tomorrow"], "red");
    let text = demo.text(&["forecast"]).await;
    assert!(text.contains("WHITE") && text.contains("RED"), "{text}");
    assert_eq!(
        plan["tempo_peaks"].as_array().map(Vec::len),
        Some(2),
        "{plan}"
    );
    let relays = demo.json(&["relays"]).await;
    assert_eq!(relays["relays"][0]["label"], "water heater");

    // Override, history, clear. The demo's forecast follows the clock, so
    // the heat pump may be on or cut now: force it the other way, so that
    // the override makes a switch whatever the hour (`--force`: at once,
    // whatever its minimum on/off time).
    let status = demo.json(&["status"]).await;
    let powered_now = status["loads"]
        .as_array()
        .and_then(|loads| loads.iter().find(|l| l["name"] == "heat-pump"))
        .and_then(|l| l["powered"].as_bool())
        .expect("heat-pump's relay state");
    let set = demo
        .json(&[
            "override",
            "heat-pump",
            if powered_now { "off" } else { "on" },
            "--for",
            "1h",
            "--force",
        ])
        .await;
    assert_eq!(set["override"]["powered"], !powered_now);
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let history = demo.json(&["history", "--load", "heat-pump"]).await;
        if history["records"][0]["reason"] == "override" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{history}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let cleared = demo.json(&["override", "clear", "heat-pump"]).await;
    assert_eq!(cleared["cleared"], true);

    // Health, for container probes.
    let relay_url = demo.env[0].1.clone();
    let health = demo
        .text(&[
            "health",
            &relay_url,
            "--service",
            "delestage.relay.v1.RelayService",
        ])
        .await;
    assert_eq!(health.trim(), "SERVING");

    // Errors say what is wrong.
    let out = demo.run(&["override", "sauna", "on", "--for", "1h"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("controller") && stderr.contains("sauna"),
        "{stderr}"
    );
    let out = demo.run(&["relay", "set", "9", "on"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("0..=7"));
    let out = demo
        .run(&["--controller", "http://127.0.0.1:1", "status"])
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the controller at http://127.0.0.1:1"),
        "{stderr}"
    );

    // Ctrl-C stops everything cleanly.
    let log = demo.process.log();
    assert!(
        demo.process.stop_with(Signal::SIGINT).await.success(),
        "{log}"
    );
}

/// The demo's stand-in Linky meter: `delestage meter` shows the house's
/// power, and it follows the relays (a cut load's power goes).
#[tokio::test]
async fn the_demo_shows_live_power_that_drops_when_a_load_is_cut() {
    let demo = Demo::start().await;
    // What the house draws with these relays energised (the demo's loads
    // are wired normally-closed: powered while their relay rests).
    let expected = |relays: &serde_json::Value| {
        let watts = [2400, 3700, 2500, 1100];
        600 + relays["relays"]
            .as_array()
            .expect("relays")
            .iter()
            .take(4)
            .zip(watts)
            .filter(|(r, _)| r["energized"] == false)
            .map(|(_, w)| w)
            .sum::<u64>()
    };
    const LOADS: [&str; 4] = ["water-heater", "ev-charger", "heat-pump", "pool-pump"];
    // Waits until the meter says what the relays imply; returns the
    // reading and which loads are powered.
    let settled = async || {
        let deadline = std::time::Instant::now() + BOUND;
        loop {
            let out = demo.run(&["--json", "meter"]).await;
            let relays = demo.json(&["relays"]).await;
            if out.status.success() {
                let meter: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("one JSON document");
                if meter["apparent_power_va"] == expected(&relays) {
                    let powered: Vec<bool> = (0..4)
                        .map(|i| relays["relays"][i]["energized"] == false)
                        .collect();
                    return (meter, powered);
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the meter never matched the relays: {} / {relays}",
                String::from_utf8_lossy(&out.stdout)
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let (meter, mut powered) = settled().await;
    assert_eq!(meter["subscribed_va"], 12000);
    assert_eq!(meter["mode"], "historic");
    let text = demo.text(&["meter"]).await;
    assert!(text.contains("VA of 12000 VA subscribed"), "{text}");
    // A tense hour may have cut them all: the heat pump powered by hand
    // first (then it is the one cut below, once the controller's pace of
    // one override per load per 10 s allows it again).
    if !powered.contains(&true) {
        demo.json(&["override", "heat-pump", "on", "--for", "1h", "--force"])
            .await;
        while !powered[2] {
            powered = settled().await.1;
        }
    }
    let (before, _) = settled().await;
    let cut = powered.iter().position(|p| *p).expect("a powered load");
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let out = demo
            .run(&["override", LOADS[cut], "off", "--for", "1h", "--force"])
            .await;
        if out.status.success() {
            break;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("one change per 10 s") && std::time::Instant::now() < deadline,
            "{stderr}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let watts = [2400, 3700, 2500, 1100][cut];
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let (after, now) = settled().await;
        if !now[cut] {
            let drop = before["apparent_power_va"].as_i64().expect("power")
                - after["apparent_power_va"].as_i64().expect("power");
            // Other loads may have moved with the plan meanwhile; the cut
            // load's own power is gone either way.
            assert!(drop == watts || after["apparent_power_va"] == expected_now(&demo).await);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never cut",
            LOADS[cut]
        );
    }
}

/// The power the demo's relays imply now.
async fn expected_now(demo: &Demo) -> serde_json::Value {
    let relays = demo.json(&["relays"]).await;
    let watts = [2400, 3700, 2500, 1100];
    let sum: u64 = 600
        + (0..4)
            .filter(|i| relays["relays"][*i]["energized"] == false)
            .map(|i| watts[i])
            .sum::<u64>();
    serde_json::json!(sum)
}

/// Times for people are Paris times whatever the box's zone (TZ), and
/// `--tz` shows another zone, named in the output.
#[tokio::test]
async fn times_are_in_paris_whatever_the_machines_zone() {
    let demo = Demo::start().await;
    let forecast = demo.json(&["forecast", "--json"]).await;
    let fetched: jiff::Timestamp = forecast["fetched_at"]
        .as_str()
        .expect("fetched_at")
        .parse()
        .expect("RFC 3339");
    let in_zone = |zone: &str| {
        let tz = jiff::tz::TimeZone::get(zone).expect("zone");
        fetched.to_zoned_datetime(tz).strftime("%H:%M").to_string()
    };

    let mut texts = Vec::new();
    for zone in ["UTC", "Asia/Tokyo"] {
        let mut env = demo.env.clone();
        env.push(("TZ", zone.to_owned()));
        let out = tokio::process::Command::new(binary("delestage"))
            .arg("forecast")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .await
            .expect("runs");
        assert!(out.status.success());
        texts.push(String::from_utf8(out.stdout).expect("utf-8"));
    }
    assert_eq!(texts[0], texts[1], "the box's zone changes nothing");
    let paris = format!("fetched {}", in_zone("Europe/Paris"));
    assert!(texts[0].contains(&paris), "{paris:?} in:\n{}", texts[0]);
    assert!(!texts[0].contains("times in"), "{}", texts[0]);

    let tokyo = demo.text(&["--tz", "Asia/Tokyo", "forecast"]).await;
    let there = format!("fetched {}", in_zone("Asia/Tokyo"));
    assert!(tokyo.contains(&there), "{there:?} in:\n{tokyo}");
    assert!(tokyo.contains("(times in Asia/Tokyo)"), "{tokyo}");

    let out = demo.run(&["--tz", "Mars/Olympus", "status"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tz Mars/Olympus"), "{stderr}");
    assert!(demo.process.stop_with(Signal::SIGINT).await.success());
}
