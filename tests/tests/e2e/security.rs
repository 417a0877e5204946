//! Who may talk to the services: bearer tokens with roles, TLS with client
//! certificates, the refusal to listen unprotected on a network, and no
//! secret in anything the services print. Real binaries, real TLS.

use std::time::Duration;

use delestage_proto::controller::v1 as cpb;
use delestage_proto::relay::v1 as rpb;
use delestage_tests::{
    BOUND, ServiceProcess, TestPki, binary, grpcurl, run_to_exit, start_controller_on,
    start_forecast_on_file, start_relay, token_hash,
};
use nix::sys::signal::Signal;
use rpb::relay_service_client::RelayServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

const READ_TOKEN: &str = "read-token-6b1f0c2e";
const CONTROL_TOKEN: &str = "control-token-93ad77f1";
const RELAY: &str = "delestage.relay.v1.RelayService";

fn tokens_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tokens");
    std::fs::write(
        &path,
        format!(
            "# delestage tokens\nread {} dashboard\ncontrol {} controller\n",
            token_hash(READ_TOKEN),
            token_hash(CONTROL_TOKEN)
        ),
    )
    .expect("write tokens");
    path
}

fn with_token<T>(mut request: tonic::Request<T>, token: &str) -> tonic::Request<T> {
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

#[tokio::test]
async fn tokens_have_roles_and_health_stays_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(dir.path());
    let (svc, _) = start_relay(dir.path(), &["--tokens", tokens.to_str().expect("utf-8")]).await;
    // Health needs no token.
    let channel = svc.wait_serving(RELAY).await;
    let mut client = RelayServiceClient::new(channel);

    let none = client
        .get_relays(rpb::GetRelaysRequest {})
        .await
        .expect_err("no token");
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    let wrong = client
        .get_relays(with_token(
            tonic::Request::new(rpb::GetRelaysRequest {}),
            "guess",
        ))
        .await
        .expect_err("unknown token");
    assert_eq!(wrong.code(), Code::Unauthenticated);

    client
        .get_relays(with_token(
            tonic::Request::new(rpb::GetRelaysRequest {}),
            READ_TOKEN,
        ))
        .await
        .expect("read may Get");
    let denied = client
        .set_relay(with_token(
            tonic::Request::new(rpb::SetRelayRequest {
                channel: 1,
                energized: true,
            }),
            READ_TOKEN,
        ))
        .await
        .expect_err("read may not switch");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    client
        .set_relay(with_token(
            tonic::Request::new(rpb::SetRelayRequest {
                channel: 1,
                energized: true,
            }),
            CONTROL_TOKEN,
        ))
        .await
        .expect("control may switch");

    // grpcurl the way the README says.
    let addr = svc.addr.clone();
    let out = grpcurl(&[
        "-plaintext",
        "-H",
        &format!("authorization: Bearer {READ_TOKEN}"),
        &addr,
        "delestage.relay.v1.RelayService/GetRelays",
    ])
    .await;
    assert!(out.contains("\"channel\": 1"), "{out}");

    // The refusals are logged, the tokens are not.
    let log = svc.wait_for_log("request refused").await;
    assert!(
        log.contains("PermissionDenied") || log.contains("Unauthenticated"),
        "{log}"
    );
    let all = svc.log();
    assert!(
        !all.contains(READ_TOKEN) && !all.contains(CONTROL_TOKEN),
        "{all}"
    );
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

async fn tls_channel(
    addr: &str,
    pki: &TestPki,
    with_client_cert: bool,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).expect("ca")))
        .domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&pki.client_cert).expect("cert"),
            std::fs::read(&pki.client_key).expect("key"),
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await
}

async fn wait_serving_tls(addr: &str, pki: &TestPki) -> Channel {
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        if let Ok(channel) = tls_channel(addr, pki, true).await {
            let answer = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: RELAY.to_owned(),
                })
                .await;
            if matches!(&answer, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32) {
                return channel;
            }
        }
        assert!(std::time::Instant::now() < deadline, "not SERVING over TLS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tls_with_client_certificates_end_to_end_with_the_controller_and_the_cli() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = tokens_file(dir.path());
    let relay_state = dir.path().join("relay");
    std::fs::create_dir_all(&relay_state).expect("mkdir");
    let relay = ServiceProcess::start(
        &binary("relay-service"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            relay_state.to_str().expect("utf-8"),
            "--tls-cert",
            pki.server_cert.to_str().expect("utf-8"),
            "--tls-key",
            pki.server_key.to_str().expect("utf-8"),
            "--client-ca",
            pki.ca.to_str().expect("utf-8"),
            "--tokens",
            tokens.to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    let addr = relay.addr.clone();
    wait_serving_tls(&addr, &pki).await;

    // Without a client certificate the handshake (or the first call) fails.
    let refused = match tls_channel(&addr, &pki, false).await {
        Err(_) => true,
        Ok(channel) => RelayServiceClient::new(channel)
            .get_relays(with_token(
                tonic::Request::new(rpb::GetRelaysRequest {}),
                READ_TOKEN,
            ))
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate got through");
    // Plain http gets nowhere either.
    let plain = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await;
    if let Ok(channel) = plain {
        assert!(
            RelayServiceClient::new(channel)
                .get_relays(rpb::GetRelaysRequest {})
                .await
                .is_err()
        );
    }

    // The controller reaches it over TLS, with its certificate and token,
    // and drives the relay.
    let forecast_file = dir.path().join("ecowatt.json");
    std::fs::write(
        &forecast_file,
        delestage_ecowatt_standin::uniform_body_around_now(1),
    )
    .expect("write");
    let forecast = start_forecast_on_file(
        &forecast_file,
        &dir.path().join("forecast"),
        &["--tokens", tokens.to_str().expect("utf-8")],
    )
    .await;
    let control_file = dir.path().join("control.token");
    std::fs::write(&control_file, format!("{CONTROL_TOKEN}\n")).expect("write");
    let read_file = dir.path().join("read.token");
    std::fs::write(&read_file, READ_TOKEN).expect("write");
    let controller_state = dir.path().join("controller");
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            r#"
forecast = "http://{forecast}"
forecast_token_file = "{read}"
state_dir = "{state}"

[relays.garage]
endpoint = "https://localhost:{port}"
tls_ca = "{ca}"
tls_cert = "{cert}"
tls_key = "{key}"
token_file = "{control}"

[[load]]
name = "heater"
relay = "garage:0"
wiring = "normally-open"
shed_at = "orange"
"#,
            forecast = forecast.addr,
            read = read_file.display(),
            state = controller_state.display(),
            port = addr.rsplit(':').next().expect("port"),
            ca = pki.ca.display(),
            cert = pki.client_cert.display(),
            key = pki.client_key.display(),
            control = control_file.display(),
        ),
    )
    .expect("write config");
    let (controller, controller_channel) = start_controller_on(&config).await;
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let status = cpb::controller_service_client::ControllerServiceClient::new(
            controller_channel.clone(),
        )
        .get_status(cpb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .status
        .expect("set");
        if status.loads.iter().all(|l| l.powered == Some(true))
            && status.forecast.as_ref().is_some_and(|f| f.usable)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the controller never drove the TLS relay: {status:#?}\n{}",
            controller.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The CLI, with the CA, its certificate and a token from the environment.
    let out = tokio::process::Command::new(binary("delestage"))
        .args([
            "--relay",
            &format!(
                "https://localhost:{}",
                addr.rsplit(':').next().expect("port")
            ),
            "--tls-ca",
            pki.ca.to_str().expect("utf-8"),
            "--tls-cert",
            pki.client_cert.to_str().expect("utf-8"),
            "--tls-key",
            pki.client_key.to_str().expect("utf-8"),
            "--json",
            "relays",
        ])
        .env("DELESTAGE_TOKEN", READ_TOKEN)
        .output()
        .await
        .expect("run delestage");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let relays: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(relays["relays"][0]["energized"], true);

    // Nothing anyone printed holds a token.
    let logs = [relay.log(), forecast.log(), controller.log()].join("\n");
    for secret in [READ_TOKEN, CONTROL_TOKEN] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
    for svc in [controller, forecast, relay] {
        assert!(svc.stop_with(Signal::SIGTERM).await.success());
    }
}

#[tokio::test]
async fn an_unprotected_network_address_is_refused_unless_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_str().expect("utf-8");
    for bin in ["relay-service", "forecast-service"] {
        let mut args = vec!["--listen", "0.0.0.0:0", "--state-dir", state];
        if bin == "forecast-service" {
            args.extend(["--file", "/nonexistent.json"]);
        }
        let (status, stderr) = run_to_exit(&binary(bin), &args).await;
        assert!(!status.success(), "{bin} listened unprotected");
        assert!(
            stderr.contains("refusing to listen on 0.0.0.0:0") && stderr.contains("--insecure"),
            "{bin}: {stderr}"
        );
    }
    let svc = ServiceProcess::start(
        &binary("relay-service"),
        &["--listen", "0.0.0.0:0", "--state-dir", state, "--insecure"],
        &[],
    )
    .await;
    let port = svc.addr.rsplit(':').next().expect("port").to_owned();
    ServiceProcess::wait_serving_at(&format!("127.0.0.1:{port}"), RELAY).await;
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn help_shows_no_secret_and_bad_security_files_are_clear_errors() {
    for bin in ["relay-service", "forecast-service", "controller"] {
        let out = tokio::process::Command::new(binary(bin))
            .arg("--help")
            .env("ECOWATT_CLIENT_SECRET", "help-secret-0f9a")
            .env("DELESTAGE_TOKEN", "help-token-77aa")
            .output()
            .await
            .expect("run");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--tokens") && help.contains("--tls-cert") && help.contains("--insecure"),
            "{bin}: {help}"
        );
        assert!(
            !help.contains("help-secret-0f9a") && !help.contains("help-token-77aa"),
            "{bin}: {help}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("tokens");
    std::fs::write(&bad, "admin 1234\n").expect("write");
    let (status, stderr) = run_to_exit(
        &binary("relay-service"),
        &[
            "--tokens",
            bad.to_str().expect("utf-8"),
            "--state-dir",
            dir.path().to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains("line 1") && stderr.contains("admin"),
        "{stderr}"
    );
    let (status, stderr) = run_to_exit(
        &binary("relay-service"),
        &[
            "--tls-cert",
            "/nonexistent.pem",
            "--state-dir",
            dir.path().to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(!status.success());
    assert!(stderr.contains("--tls-key"), "{stderr}");
}

/// The README's two-box recipe for tokens, run as it is written (the lines
/// between `umask 077` and `READ=…`, from the README itself), with the
/// real `delestage`: the tokens file it makes lists both tokens, and a
/// relay-service reading it takes the read token for GetRelays and the
/// control token for SetRelay.
#[tokio::test]
async fn the_readmes_token_recipe_makes_a_tokens_file_that_works() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme.find("umask 077\n").expect("the recipe's first line");
    let end = start
        + readme[start..]
            .find("rm control.new read.new\n")
            .expect("the recipe's last line")
        + "rm control.new read.new\n".len();
    let recipe = &readme[start..end];
    let dir = tempfile::tempdir().expect("tempdir");
    let cli_dir = binary("delestage")
        .parent()
        .expect("the binaries' directory")
        .to_owned();
    let path = format!(
        "{}:{}",
        cli_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("set -eu\n{recipe}printf '%s' \"$READ\" > read.token\n");
    let run = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .await
        .expect("run bash");
    assert!(
        run.status.success(),
        "the recipe failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let tokens = std::fs::read_to_string(dir.path().join("tokens")).expect("tokens");
    let roles: Vec<&str> = tokens
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(roles, ["control", "read"], "{tokens}");
    let control = std::fs::read_to_string(dir.path().join("control.token")).expect("control");
    let read = std::fs::read_to_string(dir.path().join("read.token")).expect("read");

    let tokens = dir.path().join("tokens");
    let (svc, _) = start_relay(dir.path(), &["--tokens", tokens.to_str().expect("utf-8")]).await;
    let mut client = RelayServiceClient::new(svc.wait_serving(RELAY).await);
    client
        .get_relays(with_token(
            tonic::Request::new(rpb::GetRelaysRequest {}),
            &read,
        ))
        .await
        .expect("the recipe's read token reads");
    client
        .set_relay(with_token(
            tonic::Request::new(rpb::SetRelayRequest {
                channel: 2,
                energized: true,
            }),
            &control,
        ))
        .await
        .expect("the recipe's control token switches");
    assert!(svc.stop_with(Signal::SIGTERM).await.success());
}
