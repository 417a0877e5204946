//! The whole system as it is deployed: two relay-services (two boxes), one
//! forecast-service talking OAuth2 to a local Ecowatt stand-in, and one
//! controller, each a separate process on its own port; readiness from
//! their health checks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cpb::controller_service_client::ControllerServiceClient;
use delestage_ecowatt_standin::{Config as StandinConfig, EcowattStandin, uniform_body_around_now};
use delestage_proto::controller::v1 as cpb;
use delestage_proto::relay::v1 as rpb;
use delestage_tests::{BOUND, ServiceProcess, binary, wait_history, wait_status};
use nix::sys::signal::Signal;
use rpb::relay_service_client::RelayServiceClient;
use tonic::transport::Channel;

const GREEN: u8 = 1;
const RED: u8 = 3;
const RELAY: &str = "delestage.relay.v1.RelayService";
const FORECAST: &str = "delestage.forecast.v1.ForecastService";
const CONTROLLER: &str = "delestage.controller.v1.ControllerService";

/// The running system. A service being restarted is briefly `None`.
struct System {
    dir: tempfile::TempDir,
    standin: EcowattStandin,
    garage: Option<ServiceProcess>,
    cellar: ServiceProcess,
    forecast: Option<ServiceProcess>,
    /// Kept across restarts of the forecast-service.
    forecast_addr: String,
    controller: Option<ServiceProcess>,
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn state(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).expect("mkdir");
    p
}

async fn start_relay(dir: &Path, name: &str, listen: &str, extra: &[&str]) -> ServiceProcess {
    let state = state(dir, name);
    let mut args = vec!["--listen", listen, "--state-dir", path(&state)];
    args.extend_from_slice(extra);
    let svc = ServiceProcess::start(&binary("relay-service"), &args, &[]).await;
    svc.wait_serving(RELAY).await;
    svc
}

async fn start_forecast(dir: &Path, standin: &EcowattStandin, listen: &str) -> ServiceProcess {
    let state = state(dir, "forecast");
    let url = standin.base_url();
    let svc = ServiceProcess::start(
        &binary("forecast-service"),
        &[
            "--listen",
            listen,
            "--state-dir",
            path(&state),
            "--ecowatt-url",
            &url,
            "--refresh-interval",
            "300ms",
            "--call-margin",
            "0s",
        ],
        &[
            ("ECOWATT_CLIENT_ID", "test-client-id"),
            ("ECOWATT_CLIENT_SECRET", "test-client-secret"),
        ],
    )
    .await;
    svc.wait_serving(FORECAST).await;
    svc
}

async fn start_controller(
    dir: &Path,
    garage: &str,
    cellar: &str,
    forecast: &str,
) -> ServiceProcess {
    let state = state(dir, "controller");
    let config = dir.join("controller.toml");
    std::fs::write(
        &config,
        format!(
            r#"
forecast = "http://{forecast}"
state_dir = "{state}"

[relays.garage]
endpoint = "http://{garage}"

[relays.cellar]
endpoint = "http://{cellar}"

[[load]]
name = "water-heater"
relay = "garage:0"
wiring = "normally-open"
shed_at = "orange"
priority = 10
when_forecast_unknown = "shed"

[[load]]
name = "ev-charger"
relay = "garage:1"
wiring = "normally-open"
shed_at = "orange"
priority = 5
when_forecast_unknown = "keep"

[[load]]
name = "heat-pump"
relay = "cellar:0"
wiring = "normally-open"
shed_at = "red"
priority = 20
when_forecast_unknown = "restore"

[[load]]
name = "pool-pump"
relay = "cellar:1"
wiring = "normally-closed"
shed_at = "red"
priority = 1
when_forecast_unknown = "keep"

[policy]
restore_stagger = "300ms"
"#,
            state = state.display()
        ),
    )
    .expect("write config");
    let svc = ServiceProcess::start(
        &binary("controller"),
        &["--listen", "127.0.0.1:0", "--config", path(&config)],
        &[],
    )
    .await;
    svc.wait_serving(CONTROLLER).await;
    svc
}

impl System {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let standin = EcowattStandin::start(
            StandinConfig {
                rate_limit: None,
                ..StandinConfig::default()
            },
            uniform_body_around_now(GREEN),
        )
        .await;
        let garage = start_relay(dir.path(), "garage", "127.0.0.1:0", &[]).await;
        let cellar = start_relay(dir.path(), "cellar", "127.0.0.1:0", &[]).await;
        let forecast = start_forecast(dir.path(), &standin, "127.0.0.1:0").await;
        let controller =
            start_controller(dir.path(), &garage.addr, &cellar.addr, &forecast.addr).await;
        Self {
            dir,
            standin,
            forecast_addr: forecast.addr.clone(),
            garage: Some(garage),
            cellar,
            forecast: Some(forecast),
            controller: Some(controller),
        }
    }

    fn garage(&self) -> &ServiceProcess {
        self.garage.as_ref().expect("garage running")
    }

    fn controller(&self) -> &ServiceProcess {
        self.controller.as_ref().expect("controller running")
    }

    async fn controller_client(&self) -> ControllerServiceClient<Channel> {
        ControllerServiceClient::new(self.controller().channel().await)
    }

    /// kill -9 of the garage box, then a start on the same address with
    /// `extra` flags.
    async fn crash_and_restart_garage(&mut self, extra: &[&str]) {
        let old = self.garage.take().expect("garage running");
        let addr = old.addr.clone();
        assert!(!old.stop_with(Signal::SIGKILL).await.success());
        self.garage = Some(start_relay(self.dir.path(), "garage", &addr, extra).await);
    }

    async fn stop_forecast(&mut self) {
        let old = self.forecast.take().expect("forecast running");
        assert!(old.stop_with(Signal::SIGTERM).await.success());
    }

    /// Starts the forecast-service again on its address, with its state.
    async fn start_forecast_again(&mut self) {
        self.forecast =
            Some(start_forecast(self.dir.path(), &self.standin, &self.forecast_addr).await);
    }

    async fn restart_controller(&mut self) {
        self.stop_controller().await;
        self.start_controller_again().await;
    }

    async fn stop_controller(&mut self) {
        let old = self.controller.take().expect("controller running");
        assert!(old.stop_with(Signal::SIGTERM).await.success());
    }

    async fn start_controller_again(&mut self) {
        let garage = self.garage().addr.clone();
        self.controller = Some(
            start_controller(
                self.dir.path(),
                &garage,
                &self.cellar.addr,
                &self.forecast_addr,
            )
            .await,
        );
    }

    /// Waits until the two boxes have exactly these relays energised.
    async fn wait_relays(&self, garage: &[u32], cellar: &[u32]) {
        let deadline = Instant::now() + BOUND;
        loop {
            let now = (
                energized(&self.garage().addr).await,
                energized(&self.cellar.addr).await,
            );
            if now.0 == garage && now.1 == cellar {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "energised: garage {:?}, cellar {:?}; expected {garage:?}, {cellar:?}\ncontroller log:\n{}",
                now.0,
                now.1,
                self.controller().log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        let all = [
            self.controller,
            self.forecast,
            self.garage,
            Some(self.cellar),
        ];
        for svc in all.into_iter().flatten() {
            assert!(svc.stop_with(Signal::SIGTERM).await.success());
        }
    }
}

async fn relays(addr: &str) -> Vec<rpb::Relay> {
    let mut client = RelayServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect relay-service");
    client
        .get_relays(rpb::GetRelaysRequest {})
        .await
        .expect("GetRelays")
        .into_inner()
        .relays
}

async fn energized(addr: &str) -> Vec<u32> {
    relays(addr)
        .await
        .into_iter()
        .filter(|r| r.energized)
        .map(|r| r.channel)
        .collect()
}

fn ts(t: &Option<prost_types::Timestamp>) -> jiff::Timestamp {
    let t = t.as_ref().expect("set");
    jiff::Timestamp::new(t.seconds, t.nanos).expect("valid")
}

#[tokio::test]
async fn red_cuts_green_restores_in_order_and_restarts_are_handled() {
    let mut system = System::start().await;
    // Green: every load powered (pool-pump is normally-closed: released).
    system.wait_relays(&[0, 1], &[0]).await;

    // RTE turns the hour red: every load is cut.
    system.standin.set_signals(uniform_body_around_now(RED));
    system.wait_relays(&[], &[1]).await;

    // Green again: back in priority order, staggered.
    let mut client = system.controller_client().await;
    // (A relay shows its new state a moment before the controller has its
    // SetRelay answer and records the switch: wait for the records.)
    let before = wait_history(&mut client, "the switches", |h| {
        h.iter().filter(|r| !r.to_powered).count() == 4
    })
    .await
    .len();
    system.standin.set_signals(uniform_body_around_now(GREEN));
    system.wait_relays(&[0, 1], &[0]).await;
    let mut restores: Vec<_> =
        wait_history(&mut client, "the four restores", |h| h.len() == before + 4).await;
    restores.truncate(restores.len() - before);
    restores.reverse();
    let order: Vec<&str> = restores.iter().map(|r| r.load.as_str()).collect();
    assert_eq!(
        order,
        ["heat-pump", "water-heater", "ev-charger", "pool-pump"]
    );
    for w in restores.windows(2) {
        let gap = ts(&w[1].at).duration_since(ts(&w[0].at));
        assert!(
            gap >= jiff::SignedDuration::from_millis(300),
            "{gap:?} apart"
        );
    }

    // kill -9 of the garage box, restarted with every relay off (as a box
    // that lost power would be): the controller puts the right states back.
    system
        .crash_and_restart_garage(&["--on-start", "off"])
        .await;
    system.wait_relays(&[0, 1], &[0]).await;

    // A controller restart switches nothing: every relay keeps its
    // last-changed time.
    let before = [
        relays(&system.garage().addr).await,
        relays(&system.cellar.addr).await,
    ]
    .concat();
    system.restart_controller().await;
    let mut client = system.controller_client().await;
    // Switches happen before the status of the same pass is published:
    // once settled, the restart has made every decision it would.
    wait_status(
        &mut client,
        "the restarted controller to settle",
        |status| {
            status.forecast.as_ref().is_some_and(|f| f.usable)
                && status.relay_services.iter().all(|r| r.reachable)
                && status.loads.iter().all(|l| l.powered == Some(l.desired))
        },
    )
    .await;
    let after = [
        relays(&system.garage().addr).await,
        relays(&system.cellar.addr).await,
    ]
    .concat();
    assert_eq!(after, before, "the controller restart switched something");
    system.stop().await;
}

#[tokio::test]
async fn without_the_forecast_service_the_last_forecast_holds_and_fallbacks_need_no_forecast() {
    let mut system = System::start().await;
    system.wait_relays(&[0, 1], &[0]).await;
    let mut client = system.controller_client().await;
    // A relay shows its new state a moment before the switch is recorded:
    // count once the three powered loads all have theirs.
    let switches = wait_history(&mut client, "the three first switches", |r| r.len() == 3)
        .await
        .len();

    // forecast-service down: the forecast received still governs, nothing
    // switches, and the status says so.
    system.stop_forecast().await;
    let status = wait_status(
        &mut client,
        "the lost forecast-service in the status",
        |s| {
            s.forecast
                .as_ref()
                .is_some_and(|f| !f.forecast_service_reachable)
        },
    )
    .await;
    let forecast = status.forecast.expect("forecast state");
    assert!(forecast.usable, "{forecast:?}");
    assert!(
        forecast
            .note
            .contains("acting on the last forecast received"),
        "{forecast:?}"
    );
    // And a controller restarted meanwhile acts on the forecast it kept.
    system.restart_controller().await;
    let mut client = system.controller_client().await;
    wait_status(&mut client, "the kept forecast after a restart", |s| {
        s.forecast
            .as_ref()
            .is_some_and(|f| f.usable && !f.forecast_service_reachable)
    })
    .await;
    system.wait_relays(&[0, 1], &[0]).await;
    assert_eq!(delestage_tests::history(&mut client).await.len(), switches);

    // A controller that never received a forecast: each load follows its
    // fallback. water-heater sheds, ev-charger keeps, heat-pump restores
    // (already on), pool-pump keeps.
    system.stop_controller().await;
    std::fs::remove_file(system.dir.path().join("controller").join("forecast.json"))
        .expect("forget the kept forecast");
    system.start_controller_again().await;
    system.wait_relays(&[1], &[0]).await;
    let mut client = system.controller_client().await;
    wait_status(&mut client, "the fallback in the status", |status| {
        !status.forecast.as_ref().is_some_and(|f| f.usable)
            && status
                .loads
                .iter()
                .all(|l| l.reason() == cpb::Reason::ForecastUnknown)
    })
    .await;

    // Back up (from its cache, on the same address): normal again.
    system.start_forecast_again().await;
    system.wait_relays(&[0, 1], &[0]).await;
    system.stop().await;
}
