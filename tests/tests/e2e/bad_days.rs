//! Bad days on a box (issue 13), against the real binaries: state files
//! that are huge or not files at all, a state dir that is full or
//! read-only, and tokens set up wrong.

use std::path::Path;

use delestage_proto::controller::v1::controller_service_client::ControllerServiceClient;
use delestage_proto::relay::v1 as rpb;
use delestage_tests::{
    ServiceProcess, SmallDisk, binary, energized, load_status, poll, scrape_metrics, set_mode,
    start_controller, start_forecast_at, start_relay, wait_history, wait_status,
};
use nix::sys::signal::Signal;
use rpb::relay_service_client::RelayServiceClient;
use tonic::Code;
use tonic::transport::Channel;

/// A gigabyte that costs nothing to make (sparse).
fn huge_file(path: &Path) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(1 << 30))
        .expect("a sparse 1 GiB file");
}

/// The names in `dir` that start with `prefix`.
fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Each service meets a 1 GiB file or a directory where a state file
/// should be: it starts, says so, keeps the thing aside, and never reads a
/// gigabyte into memory.
#[tokio::test]
async fn huge_or_misplaced_state_files_are_set_aside_and_every_service_starts() {
    let dir = tempfile::tempdir().expect("tempdir");

    let relay_state = dir.path().join("relay");
    std::fs::create_dir_all(relay_state.join("relays.json")).expect("a directory for a file");
    huge_file(&relay_state.join("hold-plan.json"));
    let (relay, _) = start_relay(&relay_state, &["--hold-timeout", "30s"]).await;
    relay.wait_for_log("relays.json").await;
    assert!(
        relay
            .log()
            .contains("a directory, where a file was expected"),
        "{}",
        relay.log()
    );
    assert!(
        relay.log().contains("unusable held plan kept aside"),
        "{}",
        relay.log()
    );
    assert_eq!(
        names_starting(&relay_state, "relays.json.corrupt-").len(),
        1
    );
    assert_eq!(
        names_starting(&relay_state, "hold-plan.json.corrupt-").len(),
        1
    );
    // A fresh state file was written in its place.
    assert!(relay_state.join("relays.json").is_file());

    let forecast_state = dir.path().join("forecast");
    std::fs::create_dir_all(forecast_state.join("forecast-cache.json")).expect("mkdir");
    let standin = delestage_ecowatt_standin::EcowattStandin::start(
        delestage_ecowatt_standin::Config::default(),
        delestage_ecowatt_standin::uniform_body_around_now(1),
    )
    .await;
    let forecast = ServiceProcess::start(
        &binary("forecast-service"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            forecast_state.to_str().expect("utf-8"),
            "--ecowatt-url",
            &standin.base_url(),
        ],
        &[
            ("ECOWATT_CLIENT_ID", "test-client-id"),
            ("ECOWATT_CLIENT_SECRET", "test-client-secret"),
        ],
    )
    .await;
    forecast
        .wait_serving("delestage.forecast.v1.ForecastService")
        .await;
    forecast.wait_for_log("forecast-cache.json").await;
    assert_eq!(
        names_starting(&forecast_state, "forecast-cache.json.corrupt-").len(),
        1
    );

    let controller_state = dir.path().join("ctl");
    std::fs::create_dir_all(&controller_state).expect("mkdir");
    huge_file(&controller_state.join("overrides.json"));
    std::fs::create_dir_all(controller_state.join("history.jsonl")).expect("mkdir");
    let (controller, _) = start_controller(
        dir.path(),
        &format!(
            "forecast = \"http://{}\"\nstate_dir = \"{}\"\n[relays.a]\nendpoint = \"http://{}\"\n[[load]]\nname = \"x\"\nrelay = \"a:0\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n",
            forecast.addr,
            controller_state.display(),
            relay.addr
        ),
    )
    .await;
    controller.wait_for_log("history.jsonl").await;
    let log = controller.log();
    assert!(
        log.contains("1073741824 bytes, over the 1048576-byte limit"),
        "{log}"
    );
    assert!(log.contains("kept aside"), "{log}");
    assert_eq!(
        names_starting(&controller_state, "overrides.json.corrupt-").len(),
        1
    );
    assert_eq!(
        names_starting(&controller_state, "history.jsonl.corrupt-").len(),
        1
    );

    for svc in [&relay, &forecast, &controller] {
        // Reading any of those gigabytes whole would show here.
        assert!(
            svc.memory_kib("VmHWM") / 1024 < 256,
            "peak RSS {} MiB",
            svc.memory_kib("VmHWM") / 1024
        );
    }
}

/// A history of a gigabyte is streamed: the controller starts, keeps the
/// records at its end, and leaves the file where it is.
#[tokio::test]
async fn a_huge_history_is_streamed_not_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("ctl");
    std::fs::create_dir_all(&state).expect("mkdir");
    let history = state.join("history.jsonl");
    huge_file(&history);
    let record = "\n{\"at\":\"2026-11-27T01:00:00Z\",\"load\":\"x\",\"relay\":\"a:0\",\"from\":true,\"to\":false,\"reason\":\"shed_for_level\",\"level\":\"red\"}\n";
    std::fs::OpenOptions::new()
        .append(true)
        .open(&history)
        .and_then(|mut f| std::io::Write::write_all(&mut f, record.as_bytes()))
        .expect("append a record");
    let (controller, channel) = start_controller(
        dir.path(),
        &format!(
            "forecast = \"http://127.0.0.1:1\"\nstate_dir = \"{}\"\n[relays.a]\nendpoint = \"http://127.0.0.1:1\"\n[[load]]\nname = \"x\"\nrelay = \"a:0\"\nwiring = \"normally-open\"\nshed_at = \"red\"\n",
            state.display(),
        ),
    )
    .await;
    assert!(
        controller.log().contains("only its last 64 MiB were read"),
        "{}",
        controller.log()
    );
    let mut client = ControllerServiceClient::new(channel);
    let records = delestage_tests::history(&mut client).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(history.is_file(), "the history stays where it is");
    assert!(
        controller.memory_kib("VmHWM") / 1024 < 256,
        "peak RSS {} MiB",
        controller.memory_kib("VmHWM") / 1024
    );
}

/// The state dir fills up (or turns read-only) under a running relay box:
/// a switch answers UNAVAILABLE and does not happen, the hold's safe states
/// wait for the disk too, and once it is back everything catches up and
/// survives a `kill -9`.
#[tokio::test]
async fn a_full_state_dir_refuses_switches_and_loses_nothing() {
    let disk = SmallDisk::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("relay-service.toml");
    std::fs::write(
        &config,
        "hold_timeout = \"4s\"\n[safe_states]\n2 = \"on\"\n",
    )
    .expect("config");
    let flags = [
        "--config",
        config.to_str().expect("utf-8"),
        "--metrics",
        "127.0.0.1:0",
    ];
    let (relay, channel) = start_relay(disk.path(), &flags).await;
    let mut client = RelayServiceClient::new(channel.clone());
    set(&mut client, 0, true).await.expect("saved and switched");

    disk.make_unwritable();
    for _ in 0..2 {
        let err = set(&mut client, 1, true)
            .await
            .expect_err("cannot be saved");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message().contains("channel 1 not switched"),
            "{}",
            err.message()
        );
        assert_eq!(energized(&channel).await, vec![0]);
    }
    // Nobody renews the hold: the safe states are due, and wait for the
    // disk like any switch.
    relay
        .wait_for_log("could not put every channel in its safe state")
        .await;
    assert_eq!(energized(&channel).await, vec![0]);

    disk.make_writable();
    poll(
        "the safe states, once the disk is back",
        || energized(&channel),
        |on| *on == vec![2],
    )
    .await;
    let metrics = scrape_metrics(&relay.metrics_addr().await).await;
    for line in [
        "relay_energized{channel=\"0\"} 0",
        "relay_energized{channel=\"2\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    set(&mut client, 1, true).await.expect("saved and switched");

    relay.stop_with(Signal::SIGKILL).await;
    let (_relay, channel) = start_relay(disk.path(), &flags).await;
    assert_eq!(energized(&channel).await, vec![1, 2]);
}

async fn set(
    client: &mut RelayServiceClient<Channel>,
    channel: u32,
    energized: bool,
) -> Result<rpb::SetRelayResponse, tonic::Status> {
    client
        .set_relay(rpb::SetRelayRequest { channel, energized })
        .await
        .map(tonic::Response::into_inner)
}

/// Tokens as a person sets them up the first time: `delestage token new`
/// gives a token and its line, any case of `Bearer` works, and the usual
/// mistakes (a file others may write, the token pasted where its hash
/// belongs) stop the service at start with the fix in the message.
#[tokio::test]
async fn tokens_are_hard_to_get_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = std::process::Command::new(binary("delestage"))
        .args(["token", "new", "--role", "control", "--name", "controller"])
        .output()
        .expect("run delestage token new");
    assert!(made.status.success(), "{made:?}");
    let stdout = String::from_utf8(made.stdout).expect("utf-8");
    let mut lines = stdout.lines();
    let (token, line) = (lines.next().expect("token"), lines.next().expect("line"));
    assert!(token.starts_with("dlst_"), "{token}");
    assert!(
        line.starts_with("control ") && line.ends_with(" controller"),
        "{line}"
    );
    assert!(!line.contains(token));

    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{line}\n")).expect("write tokens");
    set_mode(&tokens, 0o600);
    let tokens_flag = ["--tokens", tokens.to_str().expect("utf-8")];
    let (_relay, channel) = start_relay(&dir.path().join("state"), &tokens_flag).await;
    let mut client = RelayServiceClient::new(channel);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let mut request = tonic::Request::new(rpb::SetRelayRequest {
            channel: 0,
            energized: true,
        });
        request.metadata_mut().insert(
            "authorization",
            format!("{scheme} {token}").parse().expect("ascii"),
        );
        client.set_relay(request).await.expect(scheme);
    }

    // Others may write the tokens file: refused, with the fix.
    set_mode(&tokens, 0o666);
    let relay = binary("relay-service");
    let state = dir.path().join("state2");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().expect("utf-8"),
        tokens_flag[0],
        tokens_flag[1],
    ];
    let (status, stderr) = delestage_tests::run_to_exit(&relay, &args).await;
    assert!(!status.success());
    assert!(
        stderr.contains("0666") && stderr.contains(&format!("chmod go-w {}", tokens.display())),
        "{stderr}"
    );

    // The token itself pasted where its hash belongs: refused, naming the
    // line to write instead.
    std::fs::write(&tokens, format!("control {token}\n")).expect("write tokens");
    set_mode(&tokens, 0o600);
    let (status, stderr) = delestage_tests::run_to_exit(&relay, &args).await;
    assert!(!status.success());
    assert!(
        stderr.contains("line 1: this is a token itself"),
        "{stderr}"
    );
    assert!(
        stderr.contains(line.trim_end_matches(" controller")),
        "{stderr}"
    );
    assert!(!stderr.contains(token), "the token never shows: {stderr}");

    // A TLS key others may write: refused too.
    let pki = delestage_tests::TestPki::new();
    set_mode(&pki.server_key, 0o662);
    let (status, stderr) = delestage_tests::run_to_exit(
        &relay,
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--tls-cert",
            pki.server_cert.to_str().expect("utf-8"),
            "--tls-key",
            pki.server_key.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("--tls-key") && stderr.contains("chmod go-w"),
        "{stderr}"
    );
}

/// Through the controller: a red hour asks a relay box with a full state
/// dir to shed. The switch is refused and does not happen, the load shows
/// the error, and the history records nothing; once the disk is back the
/// controller's retry goes through and is recorded once.
#[tokio::test]
async fn through_the_controller_a_refused_switch_is_neither_made_nor_recorded() {
    let disk = SmallDisk::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay, relay_channel) = start_relay(disk.path(), &[]).await;
    disk.make_unwritable();
    let forecast = start_forecast_at(dir.path(), 3).await;
    let (_controller, channel) = start_controller(
        dir.path(),
        &format!(
            "forecast = \"http://{}\"\nstate_dir = \"{}\"\n[relays.a]\nendpoint = \"http://{}\"\n[[load]]\nname = \"heater\"\nrelay = \"a:0\"\nwiring = \"normally-closed\"\nshed_at = \"red\"\n",
            forecast.addr,
            dir.path().join("ctl").display(),
            relay.addr
        ),
    )
    .await;
    let mut client = ControllerServiceClient::new(channel);
    let status = wait_status(&mut client, "the refused shed shows", |s| {
        // Before the first pass the status has no loads yet.
        s.loads
            .iter()
            .any(|l| l.name == "heater" && l.error.contains("not switched"))
    })
    .await;
    assert!(!load_status(&status, "heater").desired, "red: cut");
    assert_eq!(energized(&relay_channel).await, Vec::<u32>::new());
    assert!(delestage_tests::history(&mut client).await.is_empty());

    disk.make_writable();
    let records = wait_history(&mut client, "the shed, once saved", |r| !r.is_empty()).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(!records[0].to_powered);
    assert_eq!(energized(&relay_channel).await, vec![0]);
}
