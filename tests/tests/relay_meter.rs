//! The Linky meter on a pseudo-terminal: the relay-service served
//! in-process by a real tonic server on 127.0.0.1:0, reading the stand-in meter
//! (`delestage-tic-standin`) through its link as it would read
//! /dev/ttyUSB0, and called by a real client.

use std::time::{Duration, Instant};

use delestage_proto::forecast::v1::TempoColor as PbColor;
use delestage_proto::meter::v1 as pb;
use delestage_proto::relay::v1 as rpb;
use delestage_relay_service::config::Settings;
use delestage_relay_service::meter::{MeterModeChoice, MeterSettings};
use delestage_tests::in_process::{InProcess, any_port, relay};
use delestage_tests::{BOUND, poll};
use delestage_tic::{Mode, TempoColor};
use delestage_tic_standin::{Config, TicStandin, Wire};
use pb::meter_service_client::MeterServiceClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

/// A relay-service reading a stand-in meter.
struct Box_ {
    meter: MeterServiceClient<Channel>,
    relays: rpb::relay_service_client::RelayServiceClient<Channel>,
    standin: TicStandin,
    server: InProcess<delestage_relay_service::Error>,
    _dir: tempfile::TempDir,
}

/// A 9 kVA historic Tempo meter (blue today) with a 2 kW water heater on
/// relay 0 and 300 VA of base load, read in `reader_mode`.
async fn start(meter_mode: Mode, reader_mode: MeterModeChoice) -> Box_ {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("linky");
    let mut config = Config::new(&link);
    config.mode = meter_mode;
    config.wiring = vec![Wire {
        channel: 0,
        watts: 2000,
        normally_closed: false,
    }];
    let mut standin = TicStandin::start(config).expect("the stand-in meter");
    let mut settings = Settings::new(dir.path().join("state"));
    settings.meter = Some(MeterSettings {
        path: link,
        mode: reader_mode,
    });
    let (server, _) = relay::on_a_simulated_board(settings, any_port().await);
    let channel = delestage_tests::wait_serving(
        &server.addr.to_string(),
        delestage_relay_service::METER_SERVICE_NAME,
    )
    .await;
    standin.follow(server.url());
    Box_ {
        meter: MeterServiceClient::new(channel.clone()),
        relays: rpb::relay_service_client::RelayServiceClient::new(channel),
        standin,
        server,
        _dir: dir,
    }
}

impl Box_ {
    async fn get(&mut self) -> Result<pb::MeterReading, tonic::Status> {
        self.meter
            .get_meter(pb::GetMeterRequest {})
            .await
            .map(tonic::Response::into_inner)
    }

    /// Polls GetMeter until `done`.
    async fn reading_until(
        &mut self,
        what: &str,
        done: impl Fn(&pb::MeterReading) -> bool,
    ) -> pb::MeterReading {
        let meter = self.meter.clone();
        let answer = poll(
            what,
            || {
                let mut meter = meter.clone();
                async move {
                    meter
                        .get_meter(pb::GetMeterRequest {})
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| s.message().to_owned())
                }
            },
            |r| r.as_ref().is_ok_and(&done),
        )
        .await;
        answer.expect("checked by poll")
    }

    /// Polls GetMeter until it answers an error whose message satisfies
    /// `done` (an answer counts as the empty message); the message.
    async fn unavailable_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        poll(
            what,
            || {
                let mut meter = self.meter.clone();
                async move {
                    meter
                        .get_meter(pb::GetMeterRequest {})
                        .await
                        .map(|_| String::new())
                        .unwrap_or_else(|s| s.message().to_owned())
                }
            },
            |m| done(m),
        )
        .await
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_finds_a_historic_meter_and_get_meter_says_what_it_sent() {
    let mut b = start(Mode::Historic, MeterModeChoice::Auto).await;
    let r = b.reading_until("a reading", |_| true).await;
    assert_eq!(r.apparent_power_va, 300);
    assert_eq!(r.subscribed_va, 9000);
    assert_eq!(r.tariff_period, "HPJB");
    assert_eq!(r.tempo_today(), PbColor::Blue);
    assert_eq!(r.tempo_tomorrow(), PbColor::Unspecified);
    assert_eq!(r.meter_id, "041876097523");
    assert_eq!(r.mode(), pb::MeterMode::Historic);
    assert!(r.phase_power_va.is_empty());
    assert_eq!(r.injected_va, None);
    assert!(r.frames_ok >= 1);
    // Tomorrow turns red on the meter: the next frames say so.
    b.standin
        .set_colors(Some(TempoColor::Blue), Some(TempoColor::Red));
    b.reading_until("tomorrow red", |r| r.tempo_tomorrow() == PbColor::Red)
        .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_finds_a_standard_meter_after_trying_the_historic_speed() {
    let mut b = start(Mode::Standard, MeterModeChoice::Auto).await;
    let r = b.reading_until("a reading", |_| true).await;
    assert_eq!(r.mode(), pb::MeterMode::Standard);
    assert_eq!(r.apparent_power_va, 300);
    assert_eq!(r.subscribed_va, 9000);
    assert_eq!(r.tariff_period, "HP  BLEU");
    assert_eq!(r.tempo_today(), PbColor::Blue);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_speed_says_so_and_noise_and_cut_frames_make_no_reading() {
    // A historic meter read at the standard speed only: garbage.
    let mut b = start(Mode::Historic, MeterModeChoice::Standard).await;
    let message = b
        .unavailable_until("UNAVAILABLE, naming the checksums", |m| {
            m.contains("no frame passes its checksums")
        })
        .await;
    assert!(
        message.starts_with("no valid frame from the meter for "),
        "{message}"
    );
    assert!(b.get().await.is_err());
    // The meter switched to standard mode: read.
    b.standin.set_mode(Mode::Standard);
    let first = b.reading_until("a reading", |_| true).await;
    // Noise before every frame, one frame with a bad checksum, one cut:
    // each counted bad, none a reading, and the readings go on.
    b.standin.set_noise(true);
    b.standin.bad_checksums(1);
    b.standin.cut_next_frame();
    let later = b
        .reading_until("more frames, some bad", |r| {
            r.frames_bad >= first.frames_bad + 3 && r.frames_ok > first.frames_ok + 2
        })
        .await;
    assert_eq!(later.apparent_power_va, 300);
    assert_eq!(later.meter_id, "041876097523");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_adapter_is_read_again_within_5_s_of_coming_back() {
    let mut b = start(Mode::Standard, MeterModeChoice::Standard).await;
    b.reading_until("a reading", |_| true).await;
    b.standin.unplug();
    // Once the last reading is too old, GetMeter says why.
    let message = b
        .unavailable_until("UNAVAILABLE, saying the adapter is gone", |m| {
            m.contains("is not there") || m.contains("went away")
        })
        .await;
    assert!(
        message.starts_with("no valid frame from the meter for "),
        "{message}"
    );
    b.standin.plug();
    let plugged = Instant::now();
    b.reading_until("a reading again", |_| true).await;
    let back = plugged.elapsed();
    assert!(
        back < Duration::from_secs(5),
        "read again {back:?} after the adapter came back"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_meter_sends_the_latest_then_each_reading_and_a_cut_shows_in_the_power() {
    let mut b = start(Mode::Standard, MeterModeChoice::Standard).await;
    b.reading_until("a reading", |_| true).await;
    let mut stream = b
        .meter
        .watch_meter(pb::WatchMeterRequest {})
        .await
        .expect("WatchMeter")
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(BOUND, stream.next())
            .await
            .expect("a reading in time")
            .expect("the stream is open")
            .expect("a reading")
    };
    let first = next().await;
    assert_eq!(first.apparent_power_va, 300);
    let second = next().await;
    assert!(second.frames_ok > first.frames_ok);
    let at = |r: &pb::MeterReading| r.at.map(|t| (t.seconds, t.nanos));
    assert!(at(&second) > at(&first));
    // The water heater's relay closes: its 2 kW shows in a later reading.
    b.relays
        .set_relay(rpb::SetRelayRequest {
            channel: 0,
            energized: true,
        })
        .await
        .expect("SetRelay");
    loop {
        let r = next().await;
        if r.apparent_power_va == 2300 {
            break;
        }
        assert_eq!(r.apparent_power_va, 300, "{r:?}");
    }
    b.stop().await;
}

#[tokio::test]
async fn without_a_meter_get_meter_says_how_to_configure_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = relay::on_a_simulated_board(Settings::new(dir.path()), any_port().await);
    let channel = delestage_tests::wait_serving(
        &server.addr.to_string(),
        delestage_relay_service::SERVICE_NAME,
    )
    .await;
    let mut meter = MeterServiceClient::new(channel);
    let status = meter
        .get_meter(pb::GetMeterRequest {})
        .await
        .expect_err("no meter");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(
        status.message(),
        "no meter configured (start relay-service with --meter)"
    );
    let status = meter
        .watch_meter(pb::WatchMeterRequest {})
        .await
        .expect_err("no meter");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    server.stop().await;
}
