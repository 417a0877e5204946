//! The web dashboard (`controller --http`), end to end: real relay-service
//! (simulated board), forecast-service and controller processes; the JSON
//! API over plain HTTP, and the page in a real headless Chromium.

use std::path::{Path, PathBuf};

use delestage_tests::{
    BOUND, Browser, ServiceProcess, binary, run_to_exit, start_controller_on, start_forecast_at,
    start_relay, token_hash, wait_energized,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::transport::Channel;

const RED: u8 = 3;
const READ_TOKEN: &str = "read-token-0c41d7aa";
const CONTROL_TOKEN: &str = "control-token-5e2b9f10";
const LOADS: [&str; 3] = ["water-heater", "ev-charger", "heat-pump"];

/// The three services, the grid red now: every load is cut. Normally-open
/// wiring, so a powered load is an energised relay.
struct Site {
    dir: tempfile::TempDir,
    relay: Channel,
    controller: ServiceProcess,
    /// `http://127.0.0.1:PORT`
    url: String,
    _processes: Vec<ServiceProcess>,
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn tokens_file(dir: &Path) -> PathBuf {
    let file = dir.join("tokens");
    std::fs::write(
        &file,
        format!(
            "read {} phone\ncontrol {} kitchen\n",
            token_hash(READ_TOKEN),
            token_hash(CONTROL_TOKEN)
        ),
    )
    .expect("write tokens");
    file
}

fn config(dir: &Path, relay: &str, forecast: &str, tokens: bool) -> String {
    let security = if tokens {
        format!("[security]\ntokens = \"{}\"\n", path(&tokens_file(dir)))
    } else {
        String::new()
    };
    config_with(dir, relay, forecast, &security)
}

/// The site's config, with `security` (a `[security]` table, or nothing).
fn config_with(dir: &Path, relay: &str, forecast: &str, security: &str) -> String {
    let mut text = format!(
        r#"
forecast = "http://{forecast}"
state_dir = "{}"
http = "127.0.0.1:0"

[relays.garage]
endpoint = "http://{relay}"

[policy]
restore_stagger = "0s"

{security}
"#,
        path(&dir.join("controller"))
    );
    for (channel, name) in LOADS.iter().enumerate() {
        text.push_str(&format!(
            "[[load]]\nname = \"{name}\"\nrelay = \"garage:{channel}\"\nwiring = \"normally-open\"\nshed_at = \"orange\"\n\n"
        ));
    }
    text
}

impl Site {
    async fn start(tokens: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (relay_process, relay) = start_relay(&dir.path().join("relay"), &[]).await;
        let forecast = start_forecast_at(dir.path(), RED).await;
        let file = dir.path().join("controller.toml");
        std::fs::write(
            &file,
            config(dir.path(), &relay_process.addr, &forecast.addr, tokens),
        )
        .expect("write config");
        let (controller, _) = start_controller_on(&file).await;
        let url = format!(
            "http://{}",
            controller.addr_of("serving the dashboard").await
        );
        // Every load cut, on the board.
        wait_energized(&relay, &[], "every load cut (red now)").await;
        Self {
            dir,
            relay,
            controller,
            url,
            _processes: vec![relay_process, forecast],
        }
    }
}

fn http() -> reqwest::Client {
    delestage_tests::http_client()
}

async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("an answer");
    let status = response.status();
    let body = response.bytes().await.expect("a body");
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, value)
}

/// What `delestage ARGS --json` prints, against this site's controller.
async fn cli_json(site: &Site, args: &[&str]) -> Value {
    delestage_tests::cli_json(&site.controller.addr, args).await
}

/// The keys of an object, and of its nested objects and first array items.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Array(items) => Value::Array(items.first().map(shape).into_iter().collect()),
        _ => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_the_cli_prints_and_overrides_switch_the_relay() {
    let site = Site::start(false).await;
    let client = http();

    let (code, status) = answer(client.get(format!("{}/api/status", site.url))).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(shape(&status), shape(&cli_json(&site, &["status"]).await));
    let names: Vec<&str> = status["loads"]
        .as_array()
        .expect("loads")
        .iter()
        .map(|l| l["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, LOADS);
    assert_eq!(status["level"], "red");

    let (code, plan) = answer(client.get(format!("{}/api/plan", site.url))).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(shape(&plan), shape(&cli_json(&site, &["plan"]).await));
    let (code, one) = answer(client.get(format!("{}/api/plan?load=heat-pump", site.url))).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(one["loads"].as_array().map(Vec::len), Some(1));

    let (code, forecast) = answer(client.get(format!("{}/api/forecast", site.url))).await;
    assert_eq!(code, StatusCode::OK, "{forecast}");
    assert_eq!(forecast["source"], "file");
    assert!(forecast["hours"].as_array().is_some_and(|h| !h.is_empty()));

    // An override from the API: the relay switches, the history says why.
    let (code, set) = answer(
        client
            .post(format!("{}/api/overrides/ev-charger", site.url))
            .json(&json!({ "powered": true, "for": "1h" })),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{set}");
    assert_eq!(set["override"]["load"], "ev-charger");
    assert_eq!(set["override"]["powered"], true);
    wait_energized(&site.relay, &[1], "ev-charger powered by the override").await;
    // The relay shows its state a moment before the switch is recorded.
    let (_, history) = delestage_tests::poll(
        "the override's switch in /api/history",
        || answer(client.get(format!("{}/api/history?load=ev-charger", site.url))),
        |(_, history)| history["records"][0]["reason"] == "override",
    )
    .await;
    assert_eq!(shape(&history), shape(&cli_json(&site, &["history"]).await));

    let (code, cleared) =
        answer(client.delete(format!("{}/api/overrides/ev-charger", site.url))).await;
    assert_eq!(
        (code, &cleared),
        (
            StatusCode::OK,
            &json!({ "load": "ev-charger", "cleared": true })
        )
    );
    wait_energized(&site.relay, &[], "ev-charger cut again").await;
    let (_, again) = answer(client.delete(format!("{}/api/overrides/ev-charger", site.url))).await;
    assert_eq!(again["cleared"], false);

    // Bad requests say what is wrong, and change nothing.
    let (code, e) = answer(
        client
            .post(format!("{}/api/overrides/sauna", site.url))
            .json(&json!({ "powered": true, "for": "1h" })),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("sauna")),
        "{e}"
    );
    let (code, e) = answer(
        client
            .post(format!("{}/api/overrides/heat-pump", site.url))
            .json(&json!({ "powered": true, "for": "soon" })),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("for")),
        "{e}"
    );
    let (code, _) = answer(
        client
            .post(format!("{}/api/overrides/heat-pump", site.url))
            .json(&json!({ "powered": true })),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = answer(client.get(format!("{}/api/history?since=yesterday", site.url))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let (code, _) = answer(client.get(format!("{}/api/nothing", site.url))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // The framework's own refusals are JSON too (`answer` insists).
    let (code, e) = answer(client.get(format!("{}/api/history?limit=many", site.url))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("limit")),
        "{e}"
    );
    // (A client of its own: the server may answer before reading the body
    // and close the connection, which a pooled next request would meet.)
    let (code, e) = answer(
        http()
            .post(format!("{}/api/overrides/heat-pump", site.url))
            .header("content-type", "application/json")
            // Just over axum's 2 MiB: what the server leaves unread fits
            // in the socket's buffers, so the client reads the answer.
            .body(vec![b' '; 2 * 1024 * 1024 + 64 * 1024]),
    )
    .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    let (code, e) = answer(client.put(format!("{}/api/status", site.url))).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{e}");

    // What another web site could make a browser send is refused.
    let (code, _) = answer(
        client
            .post(format!("{}/api/overrides/heat-pump", site.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("powered=true&for=1h"),
    )
    .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (code, _) = answer(
        client
            .post(format!("{}/api/overrides/heat-pump", site.url))
            .header("origin", "https://evil.example")
            .json(&json!({ "powered": true, "for": "1h" })),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, e) = answer(
        client
            .get(format!("{}/api/status", site.url))
            .header("host", "evil.example"),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{e}");
    wait_energized(&site.relay, &[], "nothing switched by the refused requests").await;

    // The page itself, with its policy.
    let page = client
        .get(format!("{}/", site.url))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(page.text().await.expect("html").contains("/app.js"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_reading_needs_read_and_acting_needs_control() {
    let site = Site::start(true).await;
    let client = http();
    let url = format!("{}/api/status", site.url);

    let response = client.get(&url).send().await.expect("answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let (code, _) = answer(client.get(&url).bearer_auth("not-a-token")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = answer(client.get(&url).bearer_auth(READ_TOKEN)).await;
    assert_eq!(code, StatusCode::OK);

    let set = format!("{}/api/overrides/water-heater", site.url);
    let body = json!({ "powered": true, "for": "30m" });
    let (code, e) = answer(client.post(&set).bearer_auth(READ_TOKEN).json(&body)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("control")),
        "{e}"
    );
    let (code, _) = answer(client.post(&set).bearer_auth(CONTROL_TOKEN).json(&body)).await;
    assert_eq!(code, StatusCode::OK);
    wait_energized(&site.relay, &[0], "water-heater powered by the override").await;
    // With tokens, a host name is fine (a rebinding site has no token).
    let (code, _) = answer(
        client
            .get(&url)
            .bearer_auth(READ_TOKEN)
            .header("host", "delestage.home.arpa"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    // The page is open: it holds no data.
    let page = client
        .get(format!("{}/", site.url))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    // The tokens are never logged.
    assert!(!site.controller.log().contains(READ_TOKEN));
    assert!(!site.controller.log().contains(CONTROL_TOKEN));
}

#[tokio::test]
async fn a_network_address_needs_tls_tokens_or_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("controller.toml");
    let text = config(dir.path(), "127.0.0.1:1", "127.0.0.1:2", false)
        .replace("http = \"127.0.0.1:0\"", "http = \"0.0.0.0:0\"");
    std::fs::write(&file, text).expect("write config");
    let (status, stderr) = run_to_exit(&binary("controller"), &["--config", path(&file)]).await;
    assert!(!status.success());
    assert!(
        stderr.contains("http") && stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_dashboard_uses_the_same_files_and_client_certificates() {
    let pki = delestage_tests::TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay_process, _relay) = start_relay(&dir.path().join("relay"), &[]).await;
    let forecast = start_forecast_at(dir.path(), RED).await;
    let security = format!(
        "[security]\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n",
        path(&pki.server_cert),
        path(&pki.server_key),
        path(&pki.ca)
    );
    let file = dir.path().join("controller.toml");
    std::fs::write(
        &file,
        config_with(dir.path(), &relay_process.addr, &forecast.addr, &security),
    )
    .expect("write config");
    let controller = ServiceProcess::start(
        &binary("controller"),
        &["--config", path(&file), "--listen", "127.0.0.1:0"],
        &[],
    )
    .await;
    let line = controller.wait_for_log("serving the dashboard").await;
    assert!(line.contains("https://"), "{line}");
    let port = controller
        .addr_of("serving the dashboard")
        .await
        .rsplit(':')
        .next()
        .expect("a port")
        .to_owned();
    let url = format!("https://localhost:{port}/api/status");

    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).expect("ca")).expect("ca pem");
    let mut identity = std::fs::read(&pki.client_cert).expect("client cert");
    identity.extend(std::fs::read(&pki.client_key).expect("client key"));
    let with_certificate = reqwest::Client::builder()
        .timeout(BOUND)
        .add_root_certificate(ca.clone())
        .identity(reqwest::Identity::from_pem(&identity).expect("identity"))
        .build()
        .expect("client");
    let (code, status) = answer(with_certificate.get(&url)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status["level"], "red");

    let without = reqwest::Client::builder()
        .timeout(BOUND)
        .add_root_certificate(ca)
        .build()
        .expect("client");
    assert!(
        without.get(&url).send().await.is_err(),
        "a client without a certificate got an answer"
    );
    let plain = http()
        .get(format!("http://localhost:{port}/api/status"))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
}

// ---- in a real browser ----

/// Loads the page, and waits until it shows every load.
async fn open(browser: &Browser, site: &Site) {
    browser
        .client
        .goto(&format!("{}/", site.url))
        .await
        .expect("open the page");
    browser
        .wait_until(
            "every load on the page",
            "return arguments[0].every(n => document.querySelector(`li[data-load=\"${n}\"] .state`)?.textContent)",
            vec![json!(LOADS)],
        )
        .await;
}

/// The state badge of `load` on the page ("ON" or "CUT"; null while the
/// page has not drawn the load yet, as just after a reload).
const BADGE: &str =
    "return document.querySelector(`li[data-load=\"${arguments[0]}\"] .state`)?.textContent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_load_and_an_override_switches_the_relay_live() {
    let site = Site::start(false).await;
    let browser = Browser::start(1280, 1000).await;
    open(&browser, &site).await;
    for load in LOADS {
        assert_eq!(browser.js(BADGE, vec![json!(load)]).await, "CUT", "{load}");
    }
    let text = browser.js("return document.body.innerText", vec![]).await;
    let text = text.as_str().expect("text");
    for words in [
        "Ecowatt now",
        "red",
        "Relay boxes",
        "garage",
        "Recent switches",
    ] {
        assert!(text.contains(words), "{words:?} not on the page:\n{text}");
    }
    // The page says why in the server's words (the JSON's reason_text,
    // the CLI's wording), not in a wording of its own.
    let (_, status) = answer(http().get(format!("{}/api/status", site.url))).await;
    let heat_pump = status["loads"]
        .as_array()
        .and_then(|loads| loads.iter().find(|l| l["name"] == "heat-pump"))
        .expect("heat-pump in the status");
    let words = heat_pump["reason_text"].as_str().expect("reason_text");
    assert_eq!(words, "shed: red hour", "{heat_pump}");
    let why = browser
        .js(
            "return document.querySelector('li[data-load=\"heat-pump\"] .why').textContent",
            vec![],
        )
        .await;
    assert_eq!(why, format!("Why: {words}"));
    browser
        .wait_until(
            "the hour grid",
            "return document.querySelectorAll('#forecast td.lv-red').length",
            vec![],
        )
        .await;
    // Paris time, from a browser in another zone.
    assert_eq!(
        browser
            .js(
                "return Intl.DateTimeFormat().resolvedOptions().timeZone",
                vec![]
            )
            .await,
        delestage_tests::BROWSER_TZ
    );
    let (_, status) = answer(http().get(format!("{}/api/status", site.url))).await;
    let fetched: jiff::Timestamp = status["forecast"]["fetched_at"]
        .as_str()
        .expect("fetched_at")
        .parse()
        .expect("RFC 3339");
    let paris = fetched.in_tz("Europe/Paris").expect("the Paris zone");
    let now_paris = jiff::Timestamp::now().in_tz("Europe/Paris").expect("zone");
    let shown = if paris.date() == now_paris.date() {
        paris.strftime("%H:%M").to_string()
    } else {
        paris.strftime("%a %-d %H:%M").to_string()
    };
    let note = browser
        .js(
            "return document.querySelector('#now .note').textContent",
            vec![],
        )
        .await;
    assert!(
        note.as_str()
            .is_some_and(|n| n.contains(&format!("forecast fetched {shown}"))),
        "{note} should say the Paris time {shown}"
    );
    browser
        .wait_until(
            "live",
            "return document.getElementById('live').dataset.state === 'live'",
            vec![],
        )
        .await;

    // A mark that a reload would wipe out.
    browser.js("window.sameDocument = true", vec![]).await;
    browser
        .js(
            "const card = document.querySelector('li[data-load=\"heat-pump\"]');
             card.querySelector('select').value = '1h';
             card.querySelector('button[data-action=\"on\"]').click();",
            vec![],
        )
        .await;
    wait_energized(
        &site.relay,
        &[2],
        "heat-pump powered by the page's override",
    )
    .await;
    browser
        .wait_until(
            "the badge says ON",
            &format!("{BADGE} === 'ON'"),
            vec![json!("heat-pump")],
        )
        .await;
    let note = browser
        .wait_until(
            "the override shown",
            "return document.querySelector('li[data-load=\"heat-pump\"] .override-note').textContent",
            vec![],
        )
        .await;
    assert!(
        note.as_str()
            .is_some_and(|n| n.starts_with("Override: on until")),
        "{note}"
    );
    browser
        .wait_until(
            "the switch in the history",
            "return [...document.querySelectorAll('#history tr')].some(r => r.textContent.includes('heat-pump') && r.textContent.includes('override'))",
            vec![],
        )
        .await;
    assert_eq!(
        browser
            .js("return window.sameDocument === true", vec![])
            .await,
        true,
        "the page reloaded"
    );

    // Clear it: back to the plan.
    browser
        .js(
            "document.querySelector('li[data-load=\"heat-pump\"] button[data-action=\"clear\"]').click()",
            vec![],
        )
        .await;
    wait_energized(&site.relay, &[], "heat-pump cut again").await;
    browser
        .wait_until(
            "the badge says CUT",
            &format!("{BADGE} === 'CUT'"),
            vec![json!("heat-pump")],
        )
        .await;
    assert_eq!(
        browser
            .js("return window.sameDocument === true", vec![])
            .await,
        true
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_fits_a_phone_and_works_with_the_keyboard() {
    let site = Site::start(false).await;
    let browser = Browser::start(375, 812).await;
    open(&browser, &site).await;
    browser
        .wait_until(
            "the hour grid",
            "return document.querySelectorAll('#forecast td').length",
            vec![],
        )
        .await;
    let widths = browser
        .js(
            "return [window.innerWidth, document.documentElement.scrollWidth, document.body.scrollWidth]",
            vec![],
        )
        .await;
    let widths: Vec<u64> = widths
        .as_array()
        .expect("widths")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(widths[0], 375, "the viewport is a phone's: {widths:?}");
    assert!(
        widths[1] <= widths[0] && widths[2] <= widths[0],
        "horizontal scroll at 375 px: {widths:?}"
    );

    // Keyboard: tab to the water heater's "Keep on" and press Enter.
    let reached = browser
        .js(
            "const target = document.querySelector('li[data-load=\"water-heater\"] button[data-action=\"on\"]');
             const focusable = [...document.querySelectorAll('a[href], button:not([hidden]), select, input')]
               .filter(e => e.offsetParent !== null);
             return focusable.indexOf(target);",
            vec![],
        )
        .await;
    let presses = reached.as_u64().expect("the button is focusable") + 1;
    let body = browser
        .client
        .find(fantoccini::Locator::Css("body"))
        .await
        .expect("body");
    for _ in 0..presses {
        body.send_keys("\u{e004}").await.expect("Tab");
    }
    let focused = browser
        .js("return document.activeElement.closest('li')?.dataset.load + ' ' + document.activeElement.dataset.action", vec![])
        .await;
    assert_eq!(focused, "water-heater on", "Tab order reaches the button");
    let active = browser
        .client
        .active_element()
        .await
        .expect("focused element");
    active.send_keys("\u{e007}").await.expect("Enter");
    wait_energized(&site.relay, &[0], "water-heater powered from the keyboard").await;
    browser.close().await;
}

/// Waits for the token dialog and answers it.
async fn give(browser: &Browser, token: &str) {
    browser
        .wait_until(
            "the token dialog",
            "return document.getElementById('token-dialog').open",
            vec![],
        )
        .await;
    browser
        .js(
            "document.getElementById('token-input').value = arguments[0];
             document.getElementById('token-form').requestSubmit();",
            vec![json!(token)],
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_the_page_asks_once_per_session_and_acting_needs_control() {
    let site = Site::start(true).await;
    let browser = Browser::start(1024, 900).await;
    browser
        .client
        .goto(&format!("{}/", site.url))
        .await
        .expect("open");
    give(&browser, READ_TOKEN).await;
    browser
        .wait_until(
            "the loads, with the read token",
            "return document.querySelectorAll('li[data-load] .state').length === 3",
            vec![],
        )
        .await;
    // Acting with the read token: the page asks for a control token.
    browser
        .js("document.querySelector('li[data-load=\"ev-charger\"] button[data-action=\"on\"]').click()", vec![])
        .await;
    give(&browser, CONTROL_TOKEN).await;
    wait_energized(
        &site.relay,
        &[1],
        "ev-charger powered with the control token",
    )
    .await;
    // Kept for the session: a reload asks nothing.
    browser.client.refresh().await.expect("reload");
    browser
        .wait_until(
            "the loads after a reload",
            &format!("{BADGE} === 'ON'"),
            vec![json!("ev-charger")],
        )
        .await;
    assert_eq!(
        browser
            .js(
                "return document.getElementById('token-dialog').open",
                vec![]
            )
            .await,
        false
    );
    // Never in a cookie.
    assert_eq!(browser.js("return document.cookie", vec![]).await, "");
    let _ = &site.dir;
    browser.close().await;
}
