//! relay-service's API, served in-process by a real tonic server on
//! 127.0.0.1:0 (`delestage_tests::in_process::relay`) and called by a
//! real client, against every board: the simulated one, and
//! (with the `phidget` feature) the Phidget backend on the vendor's real
//! libphidget22, driving a virtual 1017_2 and a virtual 1017_1 at the USB
//! boundary (tests/virtual-1017; `scripts/phidget-env` sets up the
//! loader). Every behaviour test runs on each.

use delestage_proto::relay::v1 as pb;
use delestage_relay_service::config::OnStart;
use pb::relay_service_client::RelayServiceClient;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

use delestage_tests::BOUND;
use delestage_tests::in_process::relay::{Backend, Harness};

/// The next WatchRelays event (bounded).
async fn next_event(stream: &mut tonic::Streaming<pb::RelayEvent>) -> pb::relay_event::Event {
    tokio::time::timeout(BOUND, stream.next())
        .await
        .expect("an event within the bound")
        .expect("stream open")
        .expect("event ok")
        .event
        .expect("event set")
}

// ----- Behaviour, on every board -----

async fn reports_the_board_and_every_relay(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut svc = h.start().await;
    let answer = svc.relays().await;
    assert_eq!(answer.relays.len(), 8);
    assert!(
        answer
            .relays
            .iter()
            .enumerate()
            .all(|(i, r)| r.channel == i as u32 && !r.energized)
    );
    assert_eq!(answer.relays[0].label, "water heater");
    assert_eq!(answer.relays[1].label, "");
    assert!(
        answer
            .relays
            .iter()
            .all(|r| r.max_switches_per_minute == 20)
    );
    let board = answer.board.expect("board");
    assert!(board.attached);
    assert_eq!(board.channel_count, 8);
    assert_eq!(board.kind(), svc.hardware.expected_kind());
    assert_eq!(board.serial_number, svc.hardware.expected_serial());
    assert!(!board.description.is_empty());
    svc.stop().await;
}

async fn set_relay_switches_the_hardware_and_repeating_it_is_a_no_op(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut svc = h.start().await;

    let first = svc.set(3, true).await.expect("SetRelay");
    assert!(first.switched);
    let relay = first.relay.expect("relay");
    assert!(relay.energized && relay.channel == 3);
    assert!(relay.changed_at.is_some());
    assert_eq!(relay.switches_last_minute, 1);
    assert_eq!(svc.hardware.energized_channels(), vec![3]);

    let again = svc.set(3, true).await.expect("SetRelay again");
    assert!(!again.switched);
    let relay_again = again.relay.expect("relay");
    assert_eq!(
        relay_again.switches_last_minute, 1,
        "a no-op is not a cycle"
    );
    assert_eq!(relay_again.changed_at, relay.changed_at);

    svc.set(3, false).await.expect("off");
    assert_eq!(svc.hardware.energized_channels(), Vec::<u32>::new());
    assert_eq!(svc.energized().await, Vec::<u32>::new());
    svc.stop().await;
}

async fn an_out_of_range_channel_is_invalid_argument_naming_the_range(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut svc = h.start().await;
    let err = svc.set(8, true).await.expect_err("channel 8 of 0..7");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("0..=7"), "{}", err.message());
    svc.stop().await;
}

async fn the_21st_switch_in_a_minute_is_refused_with_when_it_will_be_allowed(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut svc = h.start().await;
    for i in 0..20 {
        svc.set(5, i % 2 == 0)
            .await
            .unwrap_or_else(|e| panic!("switch {i}: {e}"));
    }
    assert_eq!(svc.hardware.energized_channels(), Vec::<u32>::new());

    let err = svc.set(5, true).await.expect_err("21st switch");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("next switch allowed in"),
        "{}",
        err.message()
    );
    assert!(err.metadata().get("grpc-retry-pushback-ms").is_some());
    assert_eq!(
        svc.hardware.energized_channels(),
        Vec::<u32>::new(),
        "nothing switched"
    );
    assert_eq!(
        svc.energized().await,
        Vec::<u32>::new(),
        "intended state unchanged"
    );

    // A no-op is still fine, and other channels are not affected.
    assert!(!svc.set(5, false).await.expect("no-op").switched);
    svc.set(6, true).await.expect("another channel");
    svc.stop().await;
}

async fn a_lower_wear_limit_is_honoured(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut settings = h.settings();
    settings.max_switches_per_minute = 2;
    let mut svc = h.start_with(settings).await;
    svc.set(0, true).await.expect("1");
    svc.set(0, false).await.expect("2");
    let err = svc.set(0, true).await.expect_err("3rd with limit 2");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("limit 2"), "{}", err.message());
    svc.stop().await;
}

async fn watch_sends_the_state_then_every_change_and_attach_detach(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut svc = h.start().await;
    svc.set(0, true).await.expect("before watching");

    let mut stream = svc.watch().await;
    match next_event(&mut stream).await {
        pb::relay_event::Event::Snapshot(s) => {
            assert_eq!(s.relays.len(), 8);
            assert!(s.relays[0].energized);
            assert!(s.board.expect("board").attached);
        }
        other => panic!("expected a snapshot first, got {other:?}"),
    }

    svc.set(1, true).await.expect("set 1");
    svc.set(1, true).await.expect("no-op");
    svc.set(2, true).await.expect("set 2");
    for expected in [1, 2] {
        match next_event(&mut stream).await {
            pb::relay_event::Event::RelayChanged(r) => {
                assert_eq!(r.channel, expected, "the no-op sent no event");
                assert!(r.energized);
            }
            other => panic!("expected relay {expected} changed, got {other:?}"),
        }
    }

    // Unplug: the board detaches, switching is UNAVAILABLE.
    svc.hardware.unplug();
    match next_event(&mut stream).await {
        pb::relay_event::Event::BoardChanged(b) => assert!(!b.attached),
        other => panic!("expected a detach, got {other:?}"),
    }
    // Then every relay: its state is no longer held by a board.
    for channel in 0..8 {
        match next_event(&mut stream).await {
            pb::relay_event::Event::RelayChanged(r) => {
                assert_eq!((r.channel, r.applied), (channel, Some(false)));
            }
            other => panic!("expected relay {channel} not applied, got {other:?}"),
        }
    }
    assert!(
        svc.relays()
            .await
            .relays
            .iter()
            .all(|r| r.applied == Some(false))
    );
    assert!(!svc.relays().await.board.expect("board").attached);
    let err = svc.set(4, true).await.expect_err("unattached");
    assert_eq!(err.code(), Code::Unavailable);

    // Plug back: attach, and the intended states are back on the relays.
    svc.hardware.plug();
    match next_event(&mut stream).await {
        pb::relay_event::Event::BoardChanged(b) => assert!(b.attached),
        other => panic!("expected an attach, got {other:?}"),
    }
    // Re-applied: every relay's state is held again.
    for channel in 0..8 {
        match next_event(&mut stream).await {
            pb::relay_event::Event::RelayChanged(r) => {
                assert_eq!((r.channel, r.applied), (channel, Some(true)));
            }
            other => panic!("expected relay {channel} applied, got {other:?}"),
        }
    }
    assert_eq!(svc.hardware.energized_channels(), vec![0, 1, 2]);
    svc.set(4, true).await.expect("attached again");
    svc.stop().await;
}

async fn a_restart_restores_the_intended_states(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut svc = h.start().await;
    svc.set(0, true).await.expect("0");
    svc.set(5, true).await.expect("5");
    svc.set(5, false).await.expect("5 off");
    svc.set(7, true).await.expect("7");
    let before = svc.relays().await.relays;
    svc.stop().await;

    let mut svc = h.start().await;
    assert_eq!(svc.energized().await, vec![0, 7]);
    assert_eq!(svc.hardware.energized_channels(), vec![0, 7]);
    let after = svc.relays().await.relays;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.changed_at, a.changed_at, "channel {}", a.channel);
    }
    svc.stop().await;
}

async fn on_start_off_starts_every_relay_off(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut svc = h.start().await;
    svc.set(2, true).await.expect("2");
    svc.stop().await;

    let mut settings = h.settings();
    settings.on_start = OnStart::Off;
    let mut svc = h.start_with(settings).await;
    assert_eq!(svc.energized().await, Vec::<u32>::new());
    assert_eq!(svc.hardware.energized_channels(), Vec::<u32>::new());
    // And that is now the saved state.
    let saved = std::fs::read_to_string(svc.state_dir.join("relays.json")).expect("state file");
    assert!(!saved.contains("\"energized\": true"), "{saved}");
    svc.stop().await;
}

async fn shutdown_ends_open_watch_streams(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut svc = h.start().await;
    let mut stream = svc.watch().await;
    next_event(&mut stream).await;
    // `stop` asserts that the server finishes within the bound.
    svc.stop().await;
    let end = tokio::time::timeout(BOUND, stream.next())
        .await
        .expect("stream ends");
    assert!(
        !matches!(end, Some(Ok(_))),
        "no event after shutdown: {end:?}"
    );
}

/// Durable first: while the state cannot be saved, a switch answers an
/// error and does not happen (asking again changes nothing); once the disk
/// is back, switches work and survive a restart.
async fn a_switch_that_cannot_be_saved_does_not_happen(backend: Backend) {
    let h = Harness::new(backend).await;
    let dir = h.dir.path().join("state");
    let mut settings = h.settings();
    settings.state_dir = dir.clone();
    let mut svc = h.start_with(settings.clone()).await;
    svc.set(0, true).await.expect("saved and switched");

    // The state dir goes away: every write fails.
    let away = h.dir.path().join("away");
    std::fs::rename(&dir, &away).expect("move the state dir away");
    for _ in 0..2 {
        let err = svc.set(1, true).await.expect_err("cannot be saved");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message().contains("channel 1 not switched")
                && err.message().contains("cannot be saved")
                && err.message().contains("relays.json"),
            "{}",
            err.message()
        );
        assert_eq!(svc.energized().await, vec![0]);
        assert_eq!(svc.hardware.energized_channels(), vec![0]);
    }

    std::fs::rename(&away, &dir).expect("the state dir is back");
    let answer = svc.set(1, true).await.expect("saved and switched");
    assert!(answer.switched);
    assert_eq!(svc.hardware.energized_channels(), vec![0, 1]);
    svc.stop().await;

    let mut svc = h.start_with(settings).await;
    assert_eq!(svc.energized().await, vec![0, 1]);
    svc.stop().await;
}

/// Declares each behaviour test once per board: simulated, and the real
/// library on a virtual 1017_2 and on a virtual 1017_1.
macro_rules! on_every_board {
    ($($name:ident),* $(,)?) => {
        mod sim {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Sim).await
            })*
        }
        #[cfg(feature = "phidget")]
        mod phidget_1017_2 {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Phidget("1017_2")).await
            })*
        }
        #[cfg(feature = "phidget")]
        mod phidget_1017_1 {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Phidget("1017_1")).await
            })*
        }
    };
}

on_every_board!(
    reports_the_board_and_every_relay,
    set_relay_switches_the_hardware_and_repeating_it_is_a_no_op,
    an_out_of_range_channel_is_invalid_argument_naming_the_range,
    the_21st_switch_in_a_minute_is_refused_with_when_it_will_be_allowed,
    a_lower_wear_limit_is_honoured,
    watch_sends_the_state_then_every_change_and_attach_detach,
    a_restart_restores_the_intended_states,
    on_start_off_starts_every_relay_off,
    shutdown_ends_open_watch_streams,
    a_switch_that_cannot_be_saved_does_not_happen,
);

// ----- Simulated board only -----

/// A subscriber that stops reading cannot make the service hold an unbounded
/// backlog for it: once it falls behind, it gets a fresh snapshot instead of
/// the missed events, and still ends up with the truth.
#[tokio::test]
async fn a_subscriber_that_falls_behind_gets_a_snapshot_and_ends_up_right() {
    const CHANNELS: u32 = 256;
    let h = Harness::new(Backend::Sim).await;
    let mut settings = h.settings();
    settings.channels = CHANNELS;
    // Long labels make every event larger than what h2 counts as a "small"
    // DATA frame: a client buffering many small frames closes the
    // connection itself (ENHANCE_YOUR_CALM), which would end the test before
    // the server ever fell behind.
    settings.labels = vec!["a long label ".repeat(25); CHANNELS as usize];
    let mut svc = h.start_with(settings).await;

    // A client with small HTTP/2 windows, so that not reading pushes back
    // on the server quickly instead of buffering megabytes in the client.
    let addr = svc.addr();
    let slow = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .expect("connect");
    let mut stream = RelayServiceClient::new(slow)
        .watch_relays(pb::WatchRelaysRequest {})
        .await
        .expect("watch")
        .into_inner();

    // Far more changes than the windows, the stream buffer and the bank's
    // backlog hold, while the subscriber reads nothing.
    for round in 0..4 {
        for channel in 0..CHANNELS {
            svc.set(channel, round % 2 == 0).await.expect("switch");
        }
    }
    svc.set(CHANNELS - 1, true).await.expect("last switch");
    let mut expected = vec![false; CHANNELS as usize];
    expected[(CHANNELS - 1) as usize] = true;

    // Now read: apply every event to a model until it matches the service.
    let mut model = vec![false; CHANNELS as usize];
    let mut snapshots = 0;
    tokio::time::timeout(BOUND, async {
        while model != expected {
            match stream.next().await.expect("open").expect("ok").event {
                Some(pb::relay_event::Event::Snapshot(s)) => {
                    snapshots += 1;
                    model = s.relays.iter().map(|r| r.energized).collect();
                }
                Some(pb::relay_event::Event::RelayChanged(r)) => {
                    model[r.channel as usize] = r.energized;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the subscriber catches up");
    assert!(
        snapshots >= 2,
        "the subscriber never fell behind ({snapshots} snapshot): the test did not test anything"
    );
    svc.stop().await;
}

#[tokio::test]
async fn past_max_streams_a_watch_is_resource_exhausted_until_one_leaves() {
    let h = Harness::new(Backend::Sim).await;
    let mut settings = h.settings();
    settings.max_streams = 2;
    let mut svc = h.start_with(settings).await;
    let mut first = svc.watch().await;
    let _second = svc.watch().await;
    let err = svc
        .client
        .watch_relays(pb::WatchRelaysRequest {})
        .await
        .expect_err("a third stream is over the cap");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("max_streams"), "{}", err.message());
    // Unary calls are not streams: still served.
    svc.set(1, true).await.expect("SetRelay");
    next_event(&mut first).await;
    // A watcher leaves: its slot comes back (once the service sees it go).
    drop(first);
    tokio::time::timeout(BOUND, async {
        loop {
            match svc.client.watch_relays(pb::WatchRelaysRequest {}).await {
                Ok(stream) => return stream,
                Err(e) => assert_eq!(e.code(), Code::ResourceExhausted),
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a slot within the bound");
    svc.stop().await;
}

// ----- The Phidget backend on the real library -----

#[cfg(feature = "phidget")]
mod phidget;
