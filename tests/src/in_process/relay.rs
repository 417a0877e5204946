//! The relay-service in-process, on every board: the simulated one, and
//! (with the `phidget` feature) the Phidget backend on the vendor's real
//! libphidget22, driving a virtual 1017 at the USB boundary
//! (tests/virtual-1017; `scripts/phidget-env` sets up the loader).

use std::time::Duration;

use delestage_proto::relay::v1 as pb;
use delestage_relay_service::board::{Board, SimulatedBoard};
use delestage_relay_service::config::Settings;
use pb::relay_service_client::RelayServiceClient;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use super::{InProcess, any_port};
use crate::BOUND;

/// Serves a relay-service on `board` until stopped.
pub fn serve(
    settings: Settings,
    board: Board,
    listener: TcpListener,
) -> InProcess<delestage_relay_service::Error> {
    InProcess::spawn(listener, |listener, shutdown| {
        delestage_relay_service::serve(settings, board, listener, shutdown)
    })
}

/// Serves a relay-service on a simulated board of 8 relays; also gives
/// the board, to unplug it.
pub fn on_a_simulated_board(
    settings: Settings,
    listener: TcpListener,
) -> (InProcess<delestage_relay_service::Error>, SimulatedBoard) {
    let board = SimulatedBoard::new(8);
    let server = serve(settings, Board::Simulated(board.clone()), listener);
    (server, board)
}

/// The board under the service.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// The simulated board.
    Sim,
    /// The real libphidget22 on a virtual board of this model.
    #[cfg(feature = "phidget")]
    Phidget(&'static str),
}

/// The hardware under the service, seen from the test: what a person with a
/// multimeter (and a hand on the USB cable) could do.
pub enum Hardware {
    Sim(SimulatedBoard),
    #[cfg(feature = "phidget")]
    Phidget {
        model: &'static str,
        serial: u32,
    },
}

/// This process's virtual USB, where the Phidget tests plug their boards.
#[cfg(feature = "phidget")]
pub mod usb {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    use crate::VirtualUsb;

    /// One control directory for this test process: libphidget22 is loaded
    /// once per process, and finds the boards through
    /// DELESTAGE_VIRTUAL_USB, which must be set before its first
    /// enumeration.
    static USB: OnceLock<VirtualUsb> = OnceLock::new();

    pub fn virtual_usb() -> &'static VirtualUsb {
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
    pub fn next_serial() -> u32 {
        static NEXT: AtomicU32 = AtomicU32::new(300_100);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    /// The real library is one per process: Phidget tests take turns.
    pub static BOARD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
}

impl Hardware {
    /// Whether the coil of `channel` is energized, on the board itself.
    pub fn energized(&self, channel: u32) -> bool {
        match self {
            Hardware::Sim(b) => b.energized(channel).expect("channel exists"),
            #[cfg(feature = "phidget")]
            Hardware::Phidget { serial, .. } => {
                usb::virtual_usb().energized(*serial).contains(&channel)
            }
        }
    }

    /// The channels whose coil is energized.
    pub fn energized_channels(&self) -> Vec<u32> {
        (0..8).filter(|&c| self.energized(c)).collect()
    }

    /// Pulls its USB cable (or the simulated board's).
    pub fn unplug(&self) {
        match self {
            Hardware::Sim(b) => b.unplug(),
            #[cfg(feature = "phidget")]
            Hardware::Phidget { serial, .. } => usb::virtual_usb().unplug(*serial),
        }
    }

    /// Plugs it back.
    pub fn plug(&self) {
        match self {
            Hardware::Sim(b) => b.plug(),
            #[cfg(feature = "phidget")]
            Hardware::Phidget { model, serial } => usb::virtual_usb().plug(model, *serial),
        }
    }

    /// The kind GetRelays should say.
    pub fn expected_kind(&self) -> pb::BoardKind {
        match self {
            Hardware::Sim(_) => pb::BoardKind::Simulated,
            #[cfg(feature = "phidget")]
            Hardware::Phidget { .. } => pb::BoardKind::Phidget1017,
        }
    }

    /// The serial GetRelays should say.
    pub fn expected_serial(&self) -> i32 {
        match self {
            Hardware::Sim(_) => 0,
            #[cfg(feature = "phidget")]
            Hardware::Phidget { serial, .. } => *serial as i32,
        }
    }
}

/// A running relay-service, in-process, with a client.
pub struct Running {
    pub client: RelayServiceClient<Channel>,
    /// The board under it, as the test sees it.
    pub hardware: Hardware,
    pub state_dir: std::path::PathBuf,
    server: InProcess<delestage_relay_service::Error>,
}

/// One test's relay-service: its board (plugged for the test, unplugged
/// at its end) and its state dir; it starts the service, again and again
/// for a restart.
pub struct Harness {
    backend: Backend,
    /// Holds the state dir, and anything else the test puts there.
    pub dir: tempfile::TempDir,
    /// The virtual board plugged for this test (unplugged at the end).
    #[cfg(feature = "phidget")]
    pub serial: u32,
    #[cfg(feature = "phidget")]
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl Harness {
    pub async fn new(backend: Backend) -> Self {
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
            dir: tempfile::tempdir().expect("tempdir"),
            #[cfg(feature = "phidget")]
            serial,
            #[cfg(feature = "phidget")]
            _turn: turn,
        }
    }

    /// The settings of its start: relay 0 labelled "water heater".
    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(self.dir.path());
        s.labels = vec!["water heater".into()];
        s
    }

    /// Starts the service on its settings.
    pub async fn start(&self) -> Running {
        self.start_with(self.settings()).await
    }

    /// The hardware of this test's board.
    #[cfg(feature = "phidget")]
    pub fn phidget(&self) -> Hardware {
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
    pub async fn start_on(&self, settings: Settings, board: Board) -> Running {
        self.serve(settings, board, self.phidget()).await
    }

    /// Starts the service on `settings`, on a board it opens.
    pub async fn start_with(&self, settings: Settings) -> Running {
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
        let state_dir = settings.state_dir.clone();
        let drives_this_board = settings
            .serial
            .is_none_or(|s| s == hardware.expected_serial());
        let server = serve(settings, board, any_port().await);
        let channel = crate::wait_serving(
            &server.addr.to_string(),
            delestage_relay_service::SERVICE_NAME,
        )
        .await;
        let mut running = Running {
            client: RelayServiceClient::new(channel),
            hardware,
            state_dir,
            server,
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
    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr
    }

    /// Stops it (checked: in time, without error).
    pub async fn stop(self) {
        self.server.stop().await;
    }

    pub async fn set(
        &mut self,
        channel: u32,
        energized: bool,
    ) -> Result<pb::SetRelayResponse, tonic::Status> {
        self.client
            .set_relay(pb::SetRelayRequest { channel, energized })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn relays(&mut self) -> pb::GetRelaysResponse {
        self.client
            .get_relays(pb::GetRelaysRequest {})
            .await
            .expect("GetRelays")
            .into_inner()
    }

    pub async fn watch(&mut self) -> tonic::Streaming<pb::RelayEvent> {
        self.client
            .watch_relays(pb::WatchRelaysRequest {})
            .await
            .expect("WatchRelays")
            .into_inner()
    }

    /// Polls GetRelays until the board is attached (bounded).
    pub async fn wait_attached(&mut self) -> pb::Board {
        self.wait_board("attached", |b| b.attached).await
    }

    /// Polls GetRelays until the board satisfies `done` (bounded).
    pub async fn wait_board(&mut self, what: &str, done: impl Fn(&pb::Board) -> bool) -> pb::Board {
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

    pub async fn energized(&mut self) -> Vec<u32> {
        self.relays()
            .await
            .relays
            .iter()
            .filter(|r| r.energized)
            .map(|r| r.channel)
            .collect()
    }
}
