//! A real browser for the dashboard's tests: Debian's headless Chromium,
//! driven over WebDriver by chromedriver (both from Debian's `chromium` and
//! `chromium-driver` packages; `scripts/test` installs them when missing).
//!
//! chromedriver is started on port 0 and says which port it took; each
//! test gets a browser of its own, with a new empty profile, that ends
//! when the [`Browser`] is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::BOUND;

/// Where the Debian packages put them; `CHROMEDRIVER` / `CHROMIUM` to
/// use others.
fn tool(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: the dashboard's tests need Debian's chromium and chromium-driver \
         (apt-get install chromium chromium-driver; scripts/test does it), or set {env}",
        path.display()
    );
    path
}

/// The browser's time zone.
pub const BROWSER_TZ: &str = "Asia/Tokyo";

/// Headless Chromium's windows are never narrower than this.
const MIN_WINDOW_WIDTH: u32 = 500;

/// A headless Chromium at `width` × `height` CSS pixels.
pub struct Browser {
    pub client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// chromedriver, in a process group of its own with every Chromium process
/// it starts: dropped, the whole group is killed. It is built as soon as
/// chromedriver runs, so that a start that fails half-way (no port, no
/// session) leaves no browser behind either: killing chromedriver alone
/// would.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Browser {
    pub async fn start(width: u32, height: u32) -> Self {
        let chromium = tool("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("CHROMEDRIVER", "/usr/bin/chromedriver");
        let profile = tempfile::tempdir().expect("a profile directory");
        // Its words on stderr are kept, to say why if it never gives a port.
        let driver_errors = profile.path().join("chromedriver.stderr");
        let stderr = std::fs::File::create(&driver_errors).expect("chromedriver's stderr file");
        let mut driver = Driver(
            Command::new(chromedriver)
                .arg("--port=0")
                // Its own process group, with the browser it starts: a test
                // that fails kills them all (see Drop).
                .process_group(0)
                .stdout(Stdio::piped())
                .stderr(stderr)
                .stdin(Stdio::null())
                // Far from Paris: the page must show Paris time whatever the
                // browser's own zone.
                .env("TZ", BROWSER_TZ)
                .kill_on_drop(true)
                .spawn()
                .expect("start chromedriver"),
        );
        let port = read_port(&mut driver.0, &driver_errors).await;
        // As root in a container Chromium needs --no-sandbox; the
        // background-networking flags keep it from calling Google's hosts,
        // which this network refuses.
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut options = json!({ "binary": chromium, "args": args });
        if width < MIN_WINDOW_WIDTH {
            // Narrower than a window can be: emulate a phone's screen, as
            // DevTools' device mode does (the layout viewport is `width`).
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2.0, "mobile": true, "touch": true }
            });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".to_owned(), options);
        let client = tokio::time::timeout(
            BOUND,
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("chromium starts within the bound")
        .expect("a WebDriver session");
        Self {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something truthy (and returns
    /// that), or panics with `what` and what the script last said.
    pub async fn wait_until(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let mut last = Value::Null;
        let found = tokio::time::timeout(BOUND, async {
            loop {
                last = self.js(script, args.clone()).await;
                if truthy(&last) {
                    return last.clone();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match found {
            Ok(v) => v,
            Err(_) => panic!(
                "{what}: not within {BOUND:?}; page text:\n{}",
                self.js("return document.body.innerText", vec![]).await
            ),
        }
    }

    /// Ends the session (the browser quits).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// "ChromeDriver was started successfully on port 38213." If it never says
/// so, the panic shows what it said instead, on stdout and on stderr
/// (`errors`), and how it ended.
async fn read_port(driver: &mut Child, errors: &Path) -> u16 {
    let stdout = driver.stdout.take().expect("chromedriver's stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut said = Vec::new();
    let port = tokio::time::timeout(BOUND, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                return rest.trim_end_matches('.').trim().parse::<u16>().ok();
            }
            said.push(line);
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(port) = port else {
        panic!(
            "chromedriver gave no port within {BOUND:?} ({:?}); stdout: {said:?}; stderr: {:?}",
            driver.try_wait(),
            std::fs::read_to_string(errors).unwrap_or_default()
        )
    };
    // Keep reading, so that its pipe never fills.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    port
}
