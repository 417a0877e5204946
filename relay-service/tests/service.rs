//! relay-service's API, served by a real tonic server on 127.0.0.1:0 and
//! called by a real client, against every board: the simulated one, and
//! (with the `phidget` feature) the Phidget backend on the vendor's real
//! libphidget22, driving a virtual 1017_2 and a virtual 1017_1 at the USB
//! boundary (tests/virtual-1017; `scripts/phidget-env` sets up the
//! loader). Every behaviour test runs on each.

use std::time::Duration;

use delestage_proto::relay::v1 as pb;
use delestage_relay_service::board::{Board, SimulatedBoard};
use delestage_relay_service::config::{OnStart, Settings};
use pb::relay_service_client::RelayServiceClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

use delestage_tests::BOUND;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sim,
    /// The real libphidget22 on a virtual board of this model.
    #[cfg(feature = "phidget")]
    Phidget(&'static str),
}

/// The hardware under the service, seen from the test: what a person with a
/// multimeter (and a hand on the USB cable) could do.
enum Hardware {
    Sim(SimulatedBoard),
    #[cfg(feature = "phidget")]
    Phidget {
        model: &'static str,
        serial: u32,
    },
}

#[cfg(feature = "phidget")]
mod usb {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    use delestage_tests::VirtualUsb;

    /// One control directory for this test process: libphidget22 is loaded
    /// once per process, and finds the boards through
    /// DELESTAGE_VIRTUAL_USB, which must be set before its first
    /// enumeration.
    static USB: OnceLock<VirtualUsb> = OnceLock::new();

    pub(crate) fn virtual_usb() -> &'static VirtualUsb {
        USB.get_or_init(|| {
            let usb = VirtualUsb::new();
            let (name, value) = usb.env();
            // SAFETY: set once, under BOARD, before any Phidget channel is
            // opened in this process (the library's threads, which read it,
            // do not exist yet); no other test reads or writes it.
            unsafe { std::env::set_var(name, value) };
            // A static is never dropped: remove the directory at exit (its
            // boards go with it).
            // SAFETY: registers a plain function.
            unsafe { libc::atexit(remove_the_directory) };
            usb
        })
    }

    extern "C" fn remove_the_directory() {
        if let Some(usb) = USB.get() {
            let _ = std::fs::remove_dir_all(usb.path());
        }
    }

    /// A fresh serial per test: the library may still be forgetting the
    /// previous test's board while the next one is plugged.
    pub(crate) fn next_serial() -> u32 {
        static NEXT: AtomicU32 = AtomicU32::new(300_100);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    /// The real library is one per process: Phidget tests take turns.
    pub(crate) static BOARD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
}

impl Hardware {
    fn energized(&self, channel: u32) -> bool {
        match self {
            Hardware::Sim(b) => b.energized(channel).expect("channel exists"),
            #[cfg(feature = "phidget")]
            Hardware::Phidget { serial, .. } => {
                usb::virtual_usb().energized(*serial).contains(&channel)
            }
        }
    }

    fn energized_channels(&self) -> Vec<u32> {
        (0..8).filter(|&c| self.energized(c)).collect()
    }

    fn unplug(&self) {
        match self {
            Hardware::Sim(b) => b.unplug(),
            #[cfg(feature = "phidget")]
            Hardware::Phidget { serial, .. } => usb::virtual_usb().unplug(*serial),
        }
    }

    fn plug(&self) {
        match self {
            Hardware::Sim(b) => b.plug(),
            #[cfg(feature = "phidget")]
            Hardware::Phidget { model, serial } => usb::virtual_usb().plug(model, *serial),
        }
    }

    fn expected_kind(&self) -> pb::BoardKind {
        match self {
            Hardware::Sim(_) => pb::BoardKind::Simulated,
            #[cfg(feature = "phidget")]
            Hardware::Phidget { .. } => pb::BoardKind::Phidget1017,
        }
    }

    fn expected_serial(&self) -> i32 {
        match self {
            Hardware::Sim(_) => 0,
            #[cfg(feature = "phidget")]
            Hardware::Phidget { serial, .. } => *serial as i32,
        }
    }
}

/// A running relay-service, in-process, with a client.
struct Running {
    client: RelayServiceClient<Channel>,
    hardware: Hardware,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), delestage_relay_service::Error>>,
    state_dir: std::path::PathBuf,
    addr: std::net::SocketAddr,
}

struct Harness {
    backend: Backend,
    _state: tempfile::TempDir,
    /// The virtual board plugged for this test (unplugged at the end).
    #[cfg(feature = "phidget")]
    serial: u32,
    #[cfg(feature = "phidget")]
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl Harness {
    async fn new(backend: Backend) -> Self {
        #[cfg(feature = "phidget")]
        let (turn, serial) = match backend {
            Backend::Phidget(model) => {
                let turn = usb::BOARD.lock().await;
                let serial = usb::next_serial();
                usb::virtual_usb().plug(model, serial);
                (Some(turn), serial)
            }
            Backend::Sim => (None, 0),
        };
        Self {
            backend,
            _state: tempfile::tempdir().expect("tempdir"),
            #[cfg(feature = "phidget")]
            serial,
            #[cfg(feature = "phidget")]
            _turn: turn,
        }
    }

    fn settings(&self) -> Settings {
        let mut s = Settings::new(self._state.path());
        s.labels = vec!["water heater".into()];
        s
    }

    async fn start(&self) -> Running {
        self.start_with(self.settings()).await
    }

    /// The hardware of this test's board.
    #[cfg(feature = "phidget")]
    fn phidget(&self) -> Hardware {
        match self.backend {
            Backend::Phidget(model) => Hardware::Phidget {
                model,
                serial: self.serial,
            },
            Backend::Sim => panic!("not a Phidget test"),
        }
    }

    /// Starts the service on a board opened by the test.
    #[cfg(feature = "phidget")]
    async fn start_on(&self, settings: Settings, board: Board) -> Running {
        self.serve(settings, board, self.phidget()).await
    }

    async fn start_with(&self, settings: Settings) -> Running {
        let (board, hardware) = match self.backend {
            Backend::Sim => {
                // A fresh board: like real hardware after a restart, all off.
                let board = SimulatedBoard::new(settings.channels);
                (Board::Simulated(board.clone()), Hardware::Sim(board))
            }
            #[cfg(feature = "phidget")]
            Backend::Phidget(_) => (
                Board::Phidget(
                    delestage_relay_service::board::phidget::PhidgetBoard::open(
                        settings.serial,
                        settings.hardware_failsafe,
                    )
                    .expect("open the Phidget channels"),
                ),
                self.phidget(),
            ),
        };
        self.serve(settings, board, hardware).await
    }

    async fn serve(&self, settings: Settings, board: Board, hardware: Hardware) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let state_dir = settings.state_dir.clone();
        let drives_this_board = settings
            .serial
            .is_none_or(|s| s == hardware.expected_serial());
        let task = tokio::spawn(delestage_relay_service::serve(
            settings,
            board,
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        let channel =
            delestage_tests::wait_serving(&addr.to_string(), delestage_relay_service::SERVICE_NAME)
                .await;
        let mut running = Running {
            client: RelayServiceClient::new(channel),
            hardware,
            stop,
            task,
            state_dir,
            addr,
        };
        // The real library attaches on its own thread, soon after the
        // channels open: the behaviour tests start from an attached board.
        if !matches!(running.hardware, Hardware::Sim(_)) && drives_this_board {
            running.wait_attached().await;
        }
        running
    }
}

#[cfg(feature = "phidget")]
impl Drop for Harness {
    fn drop(&mut self) {
        if matches!(self.backend, Backend::Phidget(_)) {
            usb::virtual_usb().unplug(self.serial);
        }
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(BOUND, self.task)
            .await
            .expect("the service stops within the bound")
            .expect("task")
            .expect("serve returns Ok");
    }

    async fn set(
        &mut self,
        channel: u32,
        energized: bool,
    ) -> Result<pb::SetRelayResponse, tonic::Status> {
        self.client
            .set_relay(pb::SetRelayRequest { channel, energized })
            .await
            .map(|r| r.into_inner())
    }

    async fn relays(&mut self) -> pb::GetRelaysResponse {
        self.client
            .get_relays(pb::GetRelaysRequest {})
            .await
            .expect("GetRelays")
            .into_inner()
    }

    async fn watch(&mut self) -> tonic::Streaming<pb::RelayEvent> {
        self.client
            .watch_relays(pb::WatchRelaysRequest {})
            .await
            .expect("WatchRelays")
            .into_inner()
    }

    /// Polls GetRelays until the board is attached (bounded).
    async fn wait_attached(&mut self) -> pb::Board {
        self.wait_board("attached", |b| b.attached).await
    }

    /// Polls GetRelays until the board satisfies `done` (bounded).
    async fn wait_board(&mut self, what: &str, done: impl Fn(&pb::Board) -> bool) -> pb::Board {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let board = self.relays().await.board.expect("board");
            if done(&board) {
                return board;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for the board: {what} (now {board:?})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn energized(&mut self) -> Vec<u32> {
        self.relays()
            .await
            .relays
            .iter()
            .filter(|r| r.energized)
            .map(|r| r.channel)
            .collect()
    }
}

/// Polls grpc.health.v1 until the relay service reports SERVING.
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
    let dir = h._state.path().join("state");
    let mut settings = h.settings();
    settings.state_dir = dir.clone();
    let mut svc = h.start_with(settings.clone()).await;
    svc.set(0, true).await.expect("saved and switched");

    // The state dir goes away: every write fails.
    let away = h._state.path().join("away");
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
    let addr = svc.addr;
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
#[path = "service/phidget.rs"]
mod phidget;
