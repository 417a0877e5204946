//! Memory of a relay-service whose WatchRelays watchers come and go (the
//! figures issue 16 started from: 2000 streams opened and dropped, four
//! rounds). The watchers' connections stay open between rounds, as a
//! dashboard's would; they close at the end.

use std::sync::Arc;
use std::time::Duration;

use delestage_proto::relay::v1 as rpb;
use rpb::relay_service_client::RelayServiceClient;
use tokio::sync::Barrier;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::fanout::{after_leaving, settle_rss};
use crate::procs;

/// RSS in KiB: idle, with the watchers, after each round, disconnected.
pub(crate) struct WatcherMemory {
    pub idle_kib: u64,
    pub watching_kib: u64,
    pub after_rounds_kib: Vec<u64>,
    pub disconnected_kib: u64,
}

pub(crate) async fn measure(
    bin_dir: &std::path::Path,
    watchers: usize,
    rounds: usize,
) -> anyhow::Result<WatcherMemory> {
    let dir = tempfile::tempdir()?;
    let state = procs::subdir(dir.path(), "relay")?;
    let max_streams = (watchers + 16).to_string();
    let (relay, _) = procs::start_service(
        bin_dir,
        "relay-service",
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            &state,
            "--max-streams",
            &max_streams,
            "--metrics",
            "127.0.0.1:0",
        ],
        &[],
    )
    .await?;
    let metrics = relay.metrics_addr().await;
    let mut channels = Vec::new();
    for _ in 0..watchers.div_ceil(1000).max(1) {
        channels.push(relay.channel().await);
    }
    let idle_kib = settle_rss(&relay).await;
    let mut watching_kib = 0;
    let mut after_rounds_kib = Vec::new();
    for round in 0..rounds.max(1) {
        let tasks = open(&channels, watchers).await?;
        if round == 0 {
            watching_kib = settle_rss(&relay).await;
        }
        for task in &tasks {
            task.abort();
        }
        after_rounds_kib.push(after_leaving(&relay, &metrics).await?);
    }
    drop(channels);
    let disconnected_kib = settle_rss(&relay).await;
    procs::stop(relay).await;
    Ok(WatcherMemory {
        idle_kib,
        watching_kib,
        after_rounds_kib,
        disconnected_kib,
    })
}

/// `n` WatchRelays streams, each past its first message.
async fn open(channels: &[Channel], n: usize) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let ready = Arc::new(Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = RelayServiceClient::new(channels[i % channels.len()].clone());
        let ready = Arc::clone(&ready);
        tasks.push(tokio::spawn(async move {
            let stream = client.watch_relays(rpb::WatchRelaysRequest {}).await;
            let mut stream = match stream {
                Ok(s) => s.into_inner(),
                Err(_) => {
                    ready.wait().await;
                    return;
                }
            };
            let _ = stream.next().await;
            ready.wait().await;
            while let Some(Ok(_)) = stream.next().await {}
        }));
    }
    tokio::time::timeout(Duration::from_secs(120), ready.wait())
        .await
        .map_err(|_| anyhow::anyhow!("{n} WatchRelays streams did not open in 120 s"))?;
    Ok(tasks)
}
