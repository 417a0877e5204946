//! The listening ports under a connection flood: idle sockets and request
//! bodies that never come, by the thousand, against a controller whose
//! open-files limit is 1024 and against a relay-service. The services go
//! on: answers, switches, state saves, new clients; and their memory comes
//! back afterwards.

use std::path::Path;
use std::time::{Duration, Instant};

use delestage_proto::controller::v1 as cpb;
use delestage_proto::controller::v1::controller_service_client::ControllerServiceClient;
use delestage_proto::relay::v1 as rpb;
use delestage_proto::relay::v1::relay_service_client::RelayServiceClient;
use delestage_tests::{
    BOUND, ServiceProcess, binary, poll, scrape_metrics, start_forecast_at, start_relay,
    wait_energized, write_forecast, write_heater_config,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The attacker's sockets, held open until dropped.
struct Flood {
    _sockets: Vec<TcpStream>,
    /// Connections the server closed (or refused) before we were done.
    closed_early: usize,
}

/// Opens `idle` connections that send nothing and `slow` POSTs whose head
/// promises a megabyte of body and sends one byte of it.
async fn flood(addr: &str, idle: usize, slow: usize) -> Flood {
    let mut sockets = Vec::with_capacity(idle + slow);
    let mut closed_early = 0;
    for i in 0..idle + slow {
        let mut socket = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                closed_early += 1;
                continue;
            }
        };
        if i >= idle {
            let head = "POST /api/overrides/heater HTTP/1.1\r\nHost: box\r\n\
                        Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{";
            // An evicted socket may already be closed: that is the point.
            if socket.write_all(head.as_bytes()).await.is_err() {
                closed_early += 1;
            }
        }
        sockets.push(socket);
    }
    Flood {
        _sockets: sockets,
        closed_early,
    }
}

/// The open-files limit of process `pid` (soft), from /proc.
fn open_files_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .expect("Max open files")
}

/// `binary` started through `sh` with `ulimit -n 1024` (soft and hard):
/// the process cannot raise it.
async fn start_with_1024_files(binary: &Path, args: &[&str]) -> ServiceProcess {
    let mut all = vec![
        "-c",
        "ulimit -n 1024 && exec \"$0\" \"$@\"",
        binary.to_str().expect("utf-8 path"),
    ];
    all.extend_from_slice(args);
    let process = ServiceProcess::start(Path::new("/bin/sh"), &all, &[]).await;
    assert_eq!(
        open_files_limit(process.pid().expect("running")),
        1024,
        "the service runs with 1024 files"
    );
    process
}

/// Waits for the process's RSS to come back within 20 MiB of `before`;
/// returns it (KiB).
async fn rss_settles(process: &ServiceProcess, before: u64, what: &str) -> u64 {
    let settled = tokio::time::timeout(BOUND, async {
        loop {
            let now = process.memory_kib("VmRSS");
            if now <= before + 20 * 1024 {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    settled.unwrap_or_else(|_| {
        panic!(
            "{what}: RSS stayed at {} KiB, more than 20 MiB over {before} KiB",
            process.memory_kib("VmRSS")
        )
    })
}

fn raise_own_files_limit() {
    let (_, limit) = delestage_runtime::open_files::raise_limit().expect("rlimit");
    assert!(limit >= 5000, "the test needs 5000 files, has {limit}");
}

#[tokio::test]
async fn the_dashboard_port_holds_against_4000_idle_and_slow_connections() {
    let _turn = delestage_tests::exclusive().await;
    raise_own_files_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay_process, relay) = start_relay(&dir.path().join("relay"), &[]).await;
    let forecast = start_forecast_at(dir.path(), 3).await;
    let state = dir.path().join("controller");
    let config = write_heater_config(
        dir.path(),
        &forecast.addr,
        &relay_process.addr,
        "http = \"127.0.0.1:0\"",
    );
    let controller = start_with_1024_files(
        &binary("controller"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().expect("utf-8"),
        ],
    )
    .await;
    let channel = controller
        .wait_serving("delestage.controller.v1.ControllerService")
        .await;
    let dashboard = controller.addr_of("serving the dashboard").await;
    wait_energized(&relay, &[], "the heater cut (red)").await;
    let saved = state.join("forecast.json");
    let saved_before = poll(
        "the forecast saved",
        || async { std::fs::read_to_string(&saved).ok() },
        Option::is_some,
    )
    .await
    .unwrap_or_default();
    let mut client = ControllerServiceClient::new(channel);
    client
        .get_status(cpb::GetStatusRequest::default())
        .await
        .expect("status");
    let rss_before = controller.memory_kib("VmRSS");

    let started = Instant::now();
    let flood = flood(&dashboard, 2000, 2000).await;
    println!(
        "limits: 4000 connections opened on the dashboard port in {:?} ({} closed by the server before we were done)",
        started.elapsed(),
        flood.closed_early
    );

    // gRPC answers quickly.
    let mut took = Vec::new();
    for _ in 0..20 {
        let asked = Instant::now();
        client
            .get_status(cpb::GetStatusRequest::default())
            .await
            .expect("GetStatus during the flood");
        took.push(asked.elapsed());
    }
    took.sort();
    println!(
        "limits: GetStatus during the flood: p50 {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(
        took[took.len() / 2] < Duration::from_millis(100),
        "GetStatus takes {took:?}"
    );

    // An override through gRPC switches the relay.
    client
        .set_override(cpb::SetOverrideRequest {
            load: "heater".to_owned(),
            powered: true,
            until: Some(prost_types::Timestamp::from(
                std::time::SystemTime::now() + Duration::from_secs(3600),
            )),
            force: true,
        })
        .await
        .expect("override during the flood");
    wait_energized(&relay, &[0], "the override powers the heater").await;

    // The forecast changes, and the controller saves it.
    write_forecast(&dir.path().join("forecast.json"), 1);
    poll(
        "the new forecast saved",
        || async { std::fs::read_to_string(&saved).ok() },
        |now| now.as_ref().is_some_and(|now| *now != saved_before),
    )
    .await;

    // A new dashboard client is served.
    let answer = delestage_tests::http_client()
        .get(format!("http://{dashboard}/api/status"))
        .send()
        .await
        .expect("a new dashboard client is answered");
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.expect("JSON");
    assert!(body["loads"].is_array(), "{body}");

    drop(flood);
    let rss_after = rss_settles(&controller, rss_before, "controller").await;
    println!(
        "limits: controller RSS {rss_before} KiB before, {rss_after} KiB after (peak {} KiB)",
        controller.memory_kib("VmHWM")
    );

    // A body that does not come: answered after 10 s, not held forever.
    let mut slow = TcpStream::connect(&dashboard).await.expect("connect");
    let head = format!(
        "POST /api/overrides/heater HTTP/1.1\r\nHost: {dashboard}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    // Timed from before the write: the server's 10 s start when it has
    // read the head, which can be before this task runs again.
    let asked = Instant::now();
    slow.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).contains("}") {
            let n = tokio::io::AsyncReadExt::read(&mut slow, &mut buf)
                .await
                .expect("read");
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("answered within 30 s");
    let answer = String::from_utf8_lossy(&answer);
    println!(
        "limits: a body that never came was answered after {:?}",
        asked.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");
    assert!(
        asked.elapsed() >= Duration::from_secs(10),
        "answered after {:?}, before the 10 s the body is given",
        asked.elapsed()
    );

    let log = controller.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("cannot keep the forecast"), "{log}");
}

#[tokio::test]
async fn the_relay_service_port_holds_against_3000_idle_connections() {
    let _turn = delestage_tests::exclusive().await;
    raise_own_files_limit();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("relay");
    let relay = start_with_1024_files(
        &binary("relay-service"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--metrics",
            "127.0.0.1:0",
        ],
    )
    .await;
    relay.wait_serving("delestage.relay.v1.RelayService").await;
    let metrics = relay.metrics_addr().await;
    let rss_before = relay.memory_kib("VmRSS");

    let flood = flood(&relay.addr, 3000, 0).await;
    println!(
        "limits: 3000 idle connections on the relay-service ({} closed before we were done)",
        flood.closed_early
    );
    let channel = relay.wait_serving("delestage.relay.v1.RelayService").await;
    RelayServiceClient::new(channel.clone())
        .set_relay(rpb::SetRelayRequest {
            channel: 3,
            energized: true,
        })
        .await
        .expect("SetRelay from a new client during the flood");
    wait_energized(&channel, &[3], "relay 3 switched").await;
    let port = relay.addr.rsplit(':').next().expect("port");
    let evicted = counter(
        &scrape_metrics(&metrics).await,
        &format!("connections_evicted_total{{port=\"{port}\"}}"),
    );
    // 3,000 idle and a few of our own through a cap of 512.
    assert!(evicted >= 2400, "evicted {evicted}");

    drop(flood);
    let rss_after = rss_settles(&relay, rss_before, "relay-service").await;
    println!(
        "limits: relay-service RSS {rss_before} KiB before, {rss_after} KiB after (peak {} KiB)",
        relay.memory_kib("VmHWM")
    );
}

/// The value of the metric line `name` (with its labels) in a scrape.
fn counter(scrape: &str, name: &str) -> u64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{scrape}"))
}

#[tokio::test]
async fn when_every_connection_was_answered_a_new_one_is_refused_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (relay, first) = start_relay(
        &dir.path().join("relay"),
        &["--max-connections", "2", "--metrics", "127.0.0.1:0"],
    )
    .await;
    let metrics = relay.metrics_addr().await;
    // start_relay's channel is one answered connection; this is the other.
    let second = relay.wait_serving("delestage.relay.v1.RelayService").await;

    let mut refused = TcpStream::connect(&relay.addr).await.expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(BOUND, tokio::io::AsyncReadExt::read(&mut refused, &mut buf))
        .await
        .expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "refused: {read:?}");
    let port = relay.addr.rsplit(':').next().expect("port");
    let scrape = scrape_metrics(&metrics).await;
    assert_eq!(
        counter(
            &scrape,
            &format!("connections_refused_total{{port=\"{port}\"}}")
        ),
        1
    );
    // The two clients go on.
    for channel in [first, second] {
        RelayServiceClient::new(channel)
            .get_relays(rpb::GetRelaysRequest {})
            .await
            .expect("an answered client is kept");
    }
    let log = relay.log();
    assert!(log.contains("refusing new connections"), "{log}");
}
