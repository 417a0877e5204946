//! The three services as a user runs them: real binaries, separate
//! processes, a config file for the controller.

use std::path::Path;

use delestage_proto::controller::v1 as pb;
use delestage_tests::{
    BOUND, ServiceProcess, binary, grpcurl, run_to_exit, start_forecast_on_file, wait_energized,
};
use nix::sys::signal::Signal;
use pb::controller_service_client::ControllerServiceClient;

const CONTROLLER: &str = "delestage.controller.v1.ControllerService";

fn write_forecast(path: &Path, hvalue: u8) {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        delestage_ecowatt_standin::uniform_body_around_now(hvalue),
    )
    .expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn config(relays: &str, forecast: &str, state: &Path) -> String {
    format!(
        r#"
forecast = "http://{forecast}"
state_dir = "{state}"

[relays.garage]
endpoint = "http://{relays}"

[[load]]
name = "water-heater"
relay = "garage:0"
wiring = "normally-open"
shed_at = "orange"
priority = 10

[[load]]
name = "heat-pump"
relay = "garage:5"
wiring = "normally-closed"
shed_at = "red"
priority = 20

[policy]
restore_stagger = "0s"
"#,
        state = state.display()
    )
}

#[tokio::test]
async fn three_processes_shed_on_red_and_answer_grpcurl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    };
    let forecast_file = dir.path().join("ecowatt.json");
    write_forecast(&forecast_file, 1);

    let relays = ServiceProcess::start(
        &binary("relay-service"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state("relays").to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    let relay_channel = relays.wait_serving("delestage.relay.v1.RelayService").await;
    let forecast = start_forecast_on_file(&forecast_file, &state("forecast"), &[]).await;

    let config_path = dir.path().join("controller.toml");
    std::fs::write(
        &config_path,
        config(&relays.addr, &forecast.addr, &state("controller")),
    )
    .expect("write");
    let controller = ServiceProcess::start(
        &binary("controller"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config_path.to_str().expect("utf-8"),
            "--metrics",
            "127.0.0.1:0",
        ],
        &[],
    )
    .await;
    let channel = controller.wait_serving(CONTROLLER).await;

    // Green: the heater's relay (NO) energised, the heat pump's (NC) released.
    wait_energized(&relay_channel, &[0], "relays").await;
    // Red: both cut.
    write_forecast(&forecast_file, 3);
    wait_energized(&relay_channel, &[5], "relays").await;
    let line = controller.wait_for_log("\"message\":\"switched\"").await;
    assert!(
        line.contains("water-heater") || line.contains("heat-pump"),
        "{line}"
    );

    // The status of a pass is published just after its switches: poll.
    let mut client = ControllerServiceClient::new(channel);
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let status = client
            .get_status(pb::GetStatusRequest {})
            .await
            .expect("GetStatus")
            .into_inner()
            .status
            .expect("status");
        if status
            .loads
            .iter()
            .all(|l| l.powered == Some(false) && !l.desired)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // A relay shows its state a moment before the controller has its
    // answer and counts the switch: poll.
    let metrics_addr = controller.metrics_addr().await;
    let needles = [
        "controller_loads_cut 2",
        "controller_level 4",
        "controller_forecast_usable 1",
        r#"controller_relay_service_reachable{relay_service="garage"} 1"#,
        r#"controller_switches_total{load="water-heater",to="off"} 1"#,
    ];
    delestage_tests::poll(
        "the controller's metrics",
        || delestage_tests::scrape_metrics(&metrics_addr),
        |metrics| needles.iter().all(|needle| metrics.contains(needle)),
    )
    .await;

    let addr = controller.addr.clone();
    let text = grpcurl(&["-plaintext", &addr, &format!("{CONTROLLER}/GetStatus")]).await;
    assert!(
        text.contains("REASON_SHED_FOR_LEVEL") && text.contains("SIGNAL_LEVEL_RED"),
        "{text}"
    );
    let plan = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"load": "heat-pump"}"#,
        &addr,
        &format!("{CONTROLLER}/GetPlan"),
    ])
    .await;
    assert!(
        plan.contains("\"load\": \"heat-pump\"") && !plan.contains("water-heater"),
        "{plan}"
    );
    let history = grpcurl(&["-plaintext", &addr, &format!("{CONTROLLER}/GetHistory")]).await;
    assert!(history.contains("REASON_SHED_FOR_LEVEL"), "{history}");

    for svc in [controller, forecast, relays] {
        assert!(svc.stop_with(Signal::SIGTERM).await.success());
    }
}

#[tokio::test]
async fn a_config_mistake_stops_the_controller_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("controller.toml");
    std::fs::write(
        &path,
        config("127.0.0.1:1", "127.0.0.1:2", dir.path()).replace("garage:5", "cellar:5"),
    )
    .expect("write");
    let (status, stderr) = run_to_exit(
        &binary("controller"),
        &["--config", path.to_str().expect("utf-8")],
    )
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("controller.toml")
            && stderr.contains("load[1]")
            && stderr.contains("cellar"),
        "{stderr}"
    );
    let (status, stderr) = run_to_exit(&binary("controller"), &[]).await;
    assert!(!status.success());
    assert!(stderr.contains("--config"), "{stderr}");
}
