//! Waiting for something to be true, by polling what a user would look at:
//! the relays, the controller's status, its history. Every wait is bounded
//! by [`BOUND`] and says what it waited for when it gives up.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use cpb::controller_service_client::ControllerServiceClient;
use delestage_proto::controller::v1 as cpb;
use delestage_proto::relay::v1 as rpb;
use tonic::transport::Channel;

use crate::BOUND;

/// Calls `probe` every 20 ms until what it answers satisfies `done`, and
/// returns that answer; panics after [`BOUND`] with `what` and the last
/// answer.
pub async fn poll<T: Debug, Fut: Future<Output = T>>(
    what: &str,
    mut probe: impl FnMut() -> Fut,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + BOUND;
    loop {
        let answer = probe().await;
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last: {answer:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The relays of the relay-service behind `channel` that are energised.
pub async fn energized(channel: &Channel) -> Vec<u32> {
    rpb::relay_service_client::RelayServiceClient::new(channel.clone())
        .get_relays(rpb::GetRelaysRequest {})
        .await
        .expect("GetRelays")
        .into_inner()
        .relays
        .into_iter()
        .filter(|r| r.energized)
        .map(|r| r.channel)
        .collect()
}

/// Polls until exactly `expected` relays are energised; `what` names the
/// moment in the failure message.
pub async fn wait_energized(channel: &Channel, expected: &[u32], what: &str) {
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let now = energized(channel).await;
        if now == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: energised {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The controller's status now.
pub async fn status(client: &mut ControllerServiceClient<Channel>) -> cpb::ControllerStatus {
    client
        .get_status(cpb::GetStatusRequest {})
        .await
        .expect("GetStatus")
        .into_inner()
        .status
        .expect("status")
}

/// Polls GetStatus until `done` holds.
pub async fn wait_status(
    client: &mut ControllerServiceClient<Channel>,
    what: &str,
    done: impl Fn(&cpb::ControllerStatus) -> bool,
) -> cpb::ControllerStatus {
    poll(
        what,
        || {
            let mut client = client.clone();
            async move { status(&mut client).await }
        },
        done,
    )
    .await
}

/// One load's status, by name.
pub fn load_status<'a>(status: &'a cpb::ControllerStatus, name: &str) -> &'a cpb::LoadStatus {
    status
        .loads
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no load {name:?} in the status"))
}

/// Every switch in the controller's history, newest first.
pub async fn history(client: &mut ControllerServiceClient<Channel>) -> Vec<cpb::SwitchRecord> {
    client
        .get_history(cpb::GetHistoryRequest {
            load: String::new(),
            since: None,
            limit: 0,
        })
        .await
        .expect("GetHistory")
        .into_inner()
        .records
}

/// Polls GetHistory until `done` holds. (A relay shows its new state a
/// moment before the controller has its SetRelay answer and records the
/// switch.)
pub async fn wait_history(
    client: &mut ControllerServiceClient<Channel>,
    what: &str,
    done: impl Fn(&[cpb::SwitchRecord]) -> bool,
) -> Vec<cpb::SwitchRecord> {
    poll(
        what,
        || {
            let mut client = client.clone();
            async move { history(&mut client).await }
        },
        |r: &Vec<_>| done(r),
    )
    .await
}
