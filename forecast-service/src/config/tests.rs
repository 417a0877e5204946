use super::*;
use std::path::Path;

const ID: &str = "id-0123456789";
const SECRET: &str = "secret-abcdefghij";

fn env_with_credentials(name: &str) -> Option<String> {
    match name {
        CLIENT_ID_ENV => Some(ID.to_owned()),
        CLIENT_SECRET_ENV => Some(SECRET.to_owned()),
        _ => None,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn with(args: &[&str]) -> Result<Settings, Error> {
    with_env(args, env_with_credentials)
}

fn with_env(args: &[&str], env: fn(&str) -> Option<String>) -> Result<Settings, Error> {
    let mut all = vec!["forecast-service"];
    all.extend_from_slice(args);
    Settings::from_args(&all, env)
}

fn rte(settings: &Settings) -> &RteSettings {
    match &settings.source {
        SourceSettings::Rte(r) => r,
        other => panic!("expected the RTE source, got {other:?}"),
    }
}

fn file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("forecast.toml");
    std::fs::write(&path, text).expect("write");
    let path = path.to_str().expect("utf-8").to_owned();
    (dir, path)
}

#[test]
fn defaults_are_rte_production_every_15_minutes() {
    let s = with(&[]).expect("ok");
    assert_eq!(s.listen, "127.0.0.1:50052");
    assert_eq!(s.max_age, Duration::from_secs(6 * 3600));
    let r = rte(&s);
    assert_eq!(r.base.as_str(), "https://digital.iservices.rte-france.com/");
    assert!(!r.sandbox);
    assert_eq!(r.policy.interval, RTE_MIN_SPACING);
    assert_eq!(r.policy.floor, RTE_MIN_SPACING);
    assert_eq!(r.request_timeout, Duration::from_secs(30));
    assert_eq!(s.max_streams, 20_000);
}

#[test]
fn max_streams_is_a_flag_and_a_key_of_at_least_one() {
    assert_eq!(with(&["--max-streams", "5"]).expect("ok").max_streams, 5);
    let msg = with(&["--max-streams", "0"]).expect_err("zero").to_string();
    assert!(msg.contains("max-streams"), "{msg}");
    let (_d, path) = file("max_streams = 0\n");
    let msg = with(&["--config", &path]).expect_err("zero").to_string();
    assert!(msg.contains("forecast.toml: max_streams"), "{msg}");
    let (_d, path) = file("max_streams = 300\n");
    assert_eq!(with(&["--config", &path]).expect("ok").max_streams, 300);
}

#[test]
fn no_credentials_is_an_error_saying_where_to_put_them() {
    let msg = with_env(&[], no_env)
        .expect_err("no credentials")
        .to_string();
    assert!(msg.contains("ECOWATT_CLIENT_ID"), "{msg}");
    assert!(msg.contains("--client-id-file"), "{msg}");
}

#[test]
fn credentials_from_files_are_trimmed_and_never_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = dir.path().join("id");
    let secret = dir.path().join("secret");
    std::fs::write(&id, format!("{ID}\n")).expect("write");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("write");
    let id = id.to_str().expect("utf-8");
    let secret = secret.to_str().expect("utf-8");
    let s = with_env(
        &["--client-id-file", id, "--client-secret-file", secret],
        no_env,
    )
    .expect("ok");
    use secrecy::ExposeSecret;
    assert_eq!(rte(&s).credentials.client_secret.expose_secret(), SECRET);
    let debug = format!("{s:?}");
    assert!(!debug.contains(SECRET) && !debug.contains(ID), "{debug}");

    std::fs::write(secret, "\n").expect("write");
    let msg = with(&["--client-secret-file", secret])
        .expect_err("empty")
        .to_string();
    assert!(
        msg.contains("--client-secret-file") && msg.contains("is empty"),
        "{msg}"
    );
}

#[test]
fn production_cannot_be_polled_faster_than_15_minutes() {
    let msg = with(&["--refresh-interval", "1m"])
        .expect_err("too fast")
        .to_string();
    assert!(
        msg.contains("--refresh-interval") && msg.contains("15 minutes"),
        "{msg}"
    );

    // The sandbox and other servers have no such limit.
    let s = with(&["--refresh-interval", "1m", "--sandbox"]).expect("ok");
    assert_eq!(rte(&s).policy.floor, Duration::ZERO);
    let s = with(&[
        "--refresh-interval",
        "1s",
        "--ecowatt-url",
        "http://127.0.0.1:8080",
    ])
    .expect("ok");
    assert_eq!(rte(&s).policy.interval, Duration::from_secs(1));
}

#[test]
fn credentials_never_travel_in_clear_over_a_network() {
    for (url, ok) in [
        ("http://127.0.0.1:8080", true),
        ("http://localhost:8080", true),
        ("http://[::1]:8080", true),
        ("https://rte.example", true),
        ("http://rte.example", false),
        ("http://192.168.1.10", false),
        ("ftp://rte.example", false),
        ("https://rte.example/open_api/ecowatt/v5/signals", false),
        ("not a url", false),
    ] {
        match with(&["--ecowatt-url", url]) {
            Ok(_) => assert!(ok, "{url} should be refused"),
            Err(e) => {
                assert!(!ok, "{url}: {e}");
                assert!(e.to_string().starts_with("--ecowatt-url"), "{e}");
            }
        }
    }
}

#[test]
fn a_file_alone_means_the_file_source() {
    let s = with_env(&["--file", "/tmp/x.json", "--rebase-to-today"], no_env).expect("ok");
    assert!(matches!(
        s.source,
        SourceSettings::File {
            rebase_to_today: true,
            ..
        }
    ));

    let msg = with(&["--source", "file"])
        .expect_err("no file")
        .to_string();
    assert!(msg.contains("--file"), "{msg}");

    assert!(
        with(&["--source", "rte", "--file", "/tmp/x.json"])
            .expect_err("conflict")
            .to_string()
            .starts_with("--file")
    );

    let s = with(&["--file", "/tmp/x.json", "--sandbox"]).expect("ok");
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].starts_with("--sandbox"), "{:?}", s.warnings);
}

#[test]
fn the_config_file_sets_everything_and_errors_name_the_key() {
    let (_d, path) = file(
        r#"
listen = "127.0.0.1:6000"
ecowatt_url = "https://rte.example"
sandbox = true
refresh_interval = "30m"
max_age = "2h"
request_timeout = "10s"
log_format = "json"
"#,
    );
    let s = with(&["--config", &path, "--listen", "127.0.0.1:7000"]).expect("ok");
    assert_eq!(s.listen, "127.0.0.1:7000");
    assert_eq!(s.max_age, Duration::from_secs(7200));
    assert_eq!(s.log_format, LogFormat::Json);
    let r = rte(&s);
    assert!(r.sandbox);
    assert_eq!(r.policy.interval, Duration::from_secs(1800));
    assert_eq!(r.request_timeout, Duration::from_secs(10));

    let (_d, path) = file("refresh_intervall = \"30m\"\n");
    let msg = with(&["--config", &path]).expect_err("typo").to_string();
    assert!(
        msg.contains("forecast.toml") && msg.contains("refresh_intervall"),
        "{msg}"
    );

    let (_d, path) = file("max_age = \"six hours\"\n");
    let msg = with(&["--config", &path])
        .expect_err("bad duration")
        .to_string();
    assert!(msg.contains("forecast.toml: max_age"), "{msg}");

    let (_d, path) = file("refresh_interval = \"1m\"\n");
    let msg = with(&["--config", &path])
        .expect_err("too fast")
        .to_string();
    assert!(msg.contains("forecast.toml: refresh_interval"), "{msg}");

    // Secrets do not belong in the config file.
    let (_d, path) = file("client_secret = \"x\"\n");
    let msg = with(&["--config", &path])
        .expect_err("no secrets in the file")
        .to_string();
    assert!(msg.contains("client_secret"), "{msg}");
}

#[test]
fn the_example_config_in_deploy_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/forecast-service.toml");
    let s = with(&["--config", path.to_str().expect("utf-8")])
        .expect("deploy/forecast-service.toml is valid");
    assert_eq!(rte(&s).policy.interval, RTE_MIN_SPACING);
}

#[test]
fn the_sandbox_can_be_rebased_but_the_live_forecast_cannot() {
    let s = with(&["--sandbox", "--rebase-to-today"]).expect("ok");
    assert!(rte(&s).sandbox && rte(&s).rebase_to_today);
    let msg = with(&["--rebase-to-today"])
        .expect_err("live and rebased")
        .to_string();
    assert!(
        msg.starts_with("--rebase-to-today") && msg.contains("--sandbox"),
        "{msg}"
    );
}

#[test]
fn the_call_margin_defaults_to_30s_and_is_a_flag() {
    assert_eq!(
        rte(&with(&[]).expect("ok")).policy.margin,
        Duration::from_secs(30)
    );
    let s = with(&["--call-margin", "1m"]).expect("ok");
    assert_eq!(rte(&s).policy.margin, Duration::from_secs(60));
}

fn tempo_rte(settings: &Settings) -> &TempoRteSettings {
    match &settings.tempo {
        TempoSettings::Rte(t) => t,
        other => panic!("expected Tempo from RTE, got {other:?}"),
    }
}

#[test]
fn tempo_credentials_are_its_own_else_ecowatts() {
    // Off by default; a Tempo flag without --tempo says so.
    assert!(matches!(with(&[]).expect("ok").tempo, TempoSettings::Off));
    let msg = with(&["--tempo-file", "/tmp/t.json"])
        .expect_err("no --tempo file")
        .to_string();
    assert!(msg.starts_with("--tempo-file"), "{msg}");

    // With the Ecowatt source from RTE, Tempo shares its client.
    let s = with(&["--tempo", "rte"]).expect("ok");
    assert!(tempo_rte(&s).credentials.is_none());
    assert_eq!(tempo_rte(&s).schedule.spacing, RTE_MIN_SPACING);

    // With a file for Ecowatt: the Ecowatt variables, or Tempo's own.
    let s = with(&["--file", "/tmp/x.json", "--tempo", "rte"]).expect("ok");
    assert!(tempo_rte(&s).credentials.is_some());
    fn tempo_env(name: &str) -> Option<String> {
        match name {
            TEMPO_CLIENT_ID_ENV => Some("tempo-id".to_owned()),
            TEMPO_CLIENT_SECRET_ENV => Some("tempo-secret".to_owned()),
            _ => None,
        }
    }
    let s = with_env(&["--file", "/tmp/x.json", "--tempo", "rte"], tempo_env).expect("ok");
    assert!(tempo_rte(&s).credentials.is_some());
    let msg = with_env(&["--file", "/tmp/x.json", "--tempo", "rte"], no_env)
        .expect_err("no credentials at all")
        .to_string();
    assert!(
        msg.contains("TEMPO_*") && msg.contains("ECOWATT_CLIENT_ID"),
        "{msg}"
    );
}

#[test]
fn upstream_makes_a_replica_that_needs_no_rte_credentials() {
    let s = with_env(&["--upstream", "http://root:50052"], no_env).expect("ok");
    let SourceSettings::Upstream(u) = &s.source else {
        panic!("not a replica: {:?}", s.source);
    };
    assert_eq!(u.url, "http://root:50052");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);

    let s = with_env(
        &[
            "--source",
            "upstream",
            "--upstream",
            "https://root:50052",
            "--upstream-tls-ca",
            "/etc/delestage/ca.pem",
            "--upstream-token-file",
            "/etc/delestage/read-token",
            "--refresh-interval",
            "20m",
        ],
        no_env,
    )
    .expect("ok");
    let SourceSettings::Upstream(u) = &s.source else {
        panic!("not a replica");
    };
    assert_eq!(
        u.security.token_file.as_deref(),
        Some(Path::new("/etc/delestage/read-token"))
    );
    assert!(
        s.warnings.iter().any(|w| w.contains("--refresh-interval")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn a_replicas_mistakes_name_the_flag() {
    let err = |args: &[&str]| with_env(args, no_env).expect_err("refused").to_string();
    let msg = err(&["--source", "upstream"]);
    assert!(msg.contains("--upstream URL"), "{msg}");
    let msg = err(&["--upstream", "root:50052"]);
    assert!(
        msg.contains("--upstream") && msg.contains("http://HOST:PORT"),
        "{msg}"
    );
    let msg = err(&["--upstream", "https://root:50052"]);
    assert!(msg.contains("--upstream-tls-ca"), "{msg}");
    let msg = err(&[
        "--upstream",
        "http://root:50052",
        "--upstream-tls-ca",
        "ca.pem",
    ]);
    assert!(
        msg.contains("--upstream-tls-ca") && msg.contains("https://"),
        "{msg}"
    );
    let msg = err(&[
        "--upstream",
        "https://root:50052",
        "--upstream-tls-ca",
        "ca.pem",
        "--upstream-tls-cert",
        "c.pem",
    ]);
    assert!(msg.contains("go together"), "{msg}");
    let msg = err(&["--upstream", "http://root:50052", "--tempo", "rte"]);
    assert!(msg.contains("--tempo") && msg.contains("upstream"), "{msg}");
    let msg = err(&["--file", "x.json", "--upstream-token-file", "t"]);
    assert!(
        msg.contains("--upstream-token-file") && msg.contains("--source upstream"),
        "{msg}"
    );
}

#[test]
fn the_replicas_in_deploy_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in ["deploy/k8s/delestage.yaml", "deploy/docker/compose.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).expect("read");
        let line = text
            .lines()
            .find(|l| l.contains("\"--upstream\""))
            .unwrap_or_else(|| panic!("no replica in {file}"));
        // `args: [...]` / `command: [...]`: a JSON array of strings.
        let array = &line[line.find('[').expect("[")..=line.rfind(']').expect("]")];
        let args: Vec<String> = serde_json::from_str(array).expect("a JSON array");
        assert_eq!(args[0], "forecast-service", "{file}");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let s = Settings::from_args(&args, no_env).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            matches!(&s.source, SourceSettings::Upstream(u) if u.url == "http://forecast:50052"),
            "{file}"
        );
    }
}
