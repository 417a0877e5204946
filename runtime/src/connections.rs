//! Limits on the connections a listening port holds, the same for gRPC
//! (every service) and the dashboard's HTTP.
//!
//! A small box has a few thousand file descriptors and a few hundred MiB.
//! Without limits, anyone who can reach a port can hold sockets open until
//! the process cannot open its own files (state saves fail with "too many
//! open files") and its memory balloons. So each port:
//!
//! - holds at most `max_connections` at once ([`Connections::new`]). At the
//!   cap, a new connection evicts the port's **oldest connection that has
//!   not completed a request**: idle, mid-handshake, or sending a request
//!   head or body slowly. Connections that have been answered (a dashboard
//!   showing its event stream, a controller watching relays) are never
//!   evicted, so an attacker's idle sockets cannot lock real clients out.
//!   Only when every connection has been answered is the new one closed at
//!   once. Both are counted: `connections_evicted_total{port}`,
//!   `connections_refused_total{port}`;
//! - closes a connection that has not started a request within
//!   [`OPENING_TIMEOUT`] (TLS handshake and request head), whose request
//!   body has not arrived within [`BODY_TIMEOUT`], or that has been idle
//!   between requests for [`IDLE_TIMEOUT`]
//!   (`connections_timed_out_total{port}`);
//! - and across all ports, the process keeps [`RESERVED_FILES`] descriptors
//!   of its open-files limit for its own files: past that, every port acts
//!   as if it were at its cap.
//!
//! When a wave of connections has closed, malloc's free pages go back to
//! the system ([`crate::memory::Trimmer`]).
//!
//! The pieces: [`Incoming`] accepts and admits (a stream tonic serves, and
//! the dashboard's accept loop); [`Tracked`] is an admitted socket, which
//! can be closed from outside; [`ConnectionLayer`] follows the requests on
//! it.

mod incoming;
mod io;
mod requests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use incoming::Incoming;
pub use io::{ConnectionInfo, Tracked};
pub use requests::{BodyTimeout, ConnectionLayer, ConnectionService, RequestBody, ResponseBody};

use crate::memory::Trimmer;

/// `max_connections`' default: the gRPC port of every service.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// `http_max_connections`' default: the controller's dashboard.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 256;
/// From accept to the first request's head (TLS handshake included).
pub const OPENING_TIMEOUT: Duration = Duration::from_secs(10);
/// From a request's head to the end of its body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two requests on a connection (HTTP/2 pings do not count).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Descriptors kept for the process's own files (state saves, history, the
/// board, its own clients), whatever its ports hold.
pub const RESERVED_FILES: usize = 128;
/// How often the timeouts are checked: they fire up to this much late.
const SWEEP: Duration = Duration::from_secs(1);
/// Connections closed between two trims of freed memory.
const TRIM_AFTER: usize = 64;
/// A port refusing connections says so at most this often.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Connections open on every port of this process.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// How many connections all ports together may hold: the open-files limit
/// (read once, after [`crate::process::start`] raised it) less what the
/// process keeps for itself.
fn process_budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let limit = crate::open_files::limit().unwrap_or(1024);
        usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(RESERVED_FILES)
            .max(1)
    })
}

/// How long a connection may take over each phase. The defaults are the
/// constants above; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub opening: Duration,
    pub body: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            opening: OPENING_TIMEOUT,
            body: BODY_TIMEOUT,
            idle: IDLE_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// How often to look for connections past their time: a tenth of the
    /// shortest, at most [`SWEEP`].
    fn sweep_every(&self) -> Duration {
        (self.opening.min(self.idle) / 10).clamp(Duration::from_millis(10), SWEEP)
    }
}

/// One port's connections and their limits. Cheap to clone; the
/// bookkeeping ends when the last clone and the last connection are gone.
#[derive(Clone)]
pub struct Connections {
    table: Arc<Table>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("port", &self.table.port)
            .field("max", &self.table.max)
            .field("open", &self.open())
            .finish()
    }
}

impl Connections {
    /// Limits for the port named `port` (its number, for the metrics'
    /// `port` label and the logs). Starts the task that enforces the
    /// timeouts: needs a Tokio runtime.
    pub fn new(port: impl Into<String>, max: usize) -> Self {
        Self::with_timeouts(port, max, Timeouts::default())
    }

    /// [`Connections::new`] with other timeouts.
    pub fn with_timeouts(port: impl Into<String>, max: usize, timeouts: Timeouts) -> Self {
        let port = port.into();
        let max = max.max(1);
        let budget = process_budget();
        if max > budget {
            tracing::warn!(
                port = %port,
                max_connections = max,
                budget,
                "the open-files limit lets this process hold only {budget} connections across its ports (it keeps {RESERVED_FILES} for its own files); raise `ulimit -n` (LimitNOFILE=) to hold {max} here"
            );
        }
        let stop = CancellationToken::new();
        let table = Arc::new(Table {
            port,
            max,
            timeouts,
            conns: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            closed_since_trim: AtomicUsize::new(0),
            trimmer: Trimmer::start(stop.clone()),
            last_refusal_warning: Mutex::new(None),
            stop,
        });
        tokio::spawn(sweep(Arc::downgrade(&table), timeouts.sweep_every()));
        Self { table }
    }

    /// Accepts on `listener`, admitting each connection under these limits.
    pub fn incoming(&self, listener: tokio::net::TcpListener) -> Incoming {
        Incoming::new(listener, self.clone())
    }

    /// Accepts on `listener` under a cap of `max` and the default
    /// timeouts; the port's number names it in metrics and logs.
    pub fn limit(listener: tokio::net::TcpListener, max: usize) -> Incoming {
        let port = listener
            .local_addr()
            .map_or_else(|_| "unknown".to_owned(), |a| a.port().to_string());
        Self::new(port, max).incoming(listener)
    }

    /// Admits `io` (just accepted): at the cap, by evicting the oldest
    /// connection that has not completed a request; `None` (and `io`
    /// dropped, so closed) when every connection has.
    pub fn admit<IO>(&self, io: IO) -> Option<Tracked<IO>> {
        let conn = self.table.admit()?;
        Some(Tracked::new(io, conn, Arc::clone(&self.table)))
    }

    /// Connections open on this port now.
    pub fn open(&self) -> usize {
        self.table.lock().len()
    }

    /// Connections admitted on this port since it opened.
    pub fn admitted(&self) -> u64 {
        self.table.next_id.load(Ordering::Relaxed)
    }
}

/// The port's open connections, oldest first (ids grow with each accept).
struct Table {
    port: String,
    max: usize,
    timeouts: Timeouts,
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    closed_since_trim: AtomicUsize,
    trimmer: Trimmer,
    last_refusal_warning: Mutex<Option<Instant>>,
    /// Ends the trimmer with the table.
    stop: CancellationToken,
}

impl Drop for Table {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        // A panic while holding it leaves a map that is still consistent.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self) -> Option<Arc<Conn>> {
        let mut conns = self.lock();
        if conns.len() >= self.max || OPEN.load(Ordering::Relaxed) >= process_budget() {
            let oldest_unanswered = conns
                .iter()
                .find(|(_, c)| !c.activity().answered)
                .map(|(id, _)| *id);
            match oldest_unanswered.and_then(|id| conns.remove(&id)) {
                Some(evicted) => {
                    self.forget();
                    evicted.close.cancel();
                    metrics::counter!("connections_evicted_total", "port" => self.port.clone())
                        .increment(1);
                    tracing::debug!(port = %self.port, age = ?evicted.accepted.elapsed(), "at the connection cap: evicted the oldest connection without a completed request");
                }
                None => {
                    drop(conns);
                    self.refused();
                    return None;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(id, self.timeouts));
        conns.insert(id, Arc::clone(&conn));
        OPEN.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("connections_open", "port" => self.port.clone()).set(conns.len() as f64);
        Some(conn)
    }

    fn refused(&self) {
        metrics::counter!("connections_refused_total", "port" => self.port.clone()).increment(1);
        let mut last = self
            .last_refusal_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                port = %self.port,
                max_connections = self.max,
                "every connection on this port is in use by a client that completed a request: refusing new connections (said at most once a minute; see connections_refused_total)"
            );
        }
    }

    /// A connection left the table (closed, evicted, timed out). After a
    /// wave of departures, freed memory goes back to the system (the
    /// trimmer waits for the wave to pass; a client now and then costs
    /// nothing).
    fn forget(&self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
        if self.closed_since_trim.fetch_add(1, Ordering::Relaxed) + 1 >= TRIM_AFTER {
            self.closed_since_trim.store(0, Ordering::Relaxed);
            self.trimmer.freed();
        }
    }

    /// A connection's socket was dropped.
    fn remove(&self, id: u64) {
        let mut conns = self.lock();
        if conns.remove(&id).is_some() {
            self.forget();
            metrics::gauge!("connections_open", "port" => self.port.clone())
                .set(conns.len() as f64);
        }
    }

    /// Closes the connections past their timeout.
    fn sweep(&self, now: Instant) {
        let every = self.timeouts.sweep_every();
        let mut conns = self.lock();
        let late: Vec<(u64, &'static str)> = conns
            .iter()
            .filter_map(|(id, c)| c.swept(now, every).map(|why| (*id, why)))
            .collect();
        for (id, why) in late {
            if let Some(conn) = conns.remove(&id) {
                tracing::debug!(port = %self.port, why, "closing a connection");
                self.forget();
                conn.close.cancel();
                metrics::counter!("connections_timed_out_total", "port" => self.port.clone())
                    .increment(1);
            }
        }
        metrics::gauge!("connections_open", "port" => self.port.clone()).set(conns.len() as f64);
    }
}

/// Checks the timeouts every `every`, for as long as the table lives.
async fn sweep(table: Weak<Table>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(table) = table.upgrade() else { return };
        table.sweep(Instant::now());
    }
}

/// One admitted connection, as the limits see it.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Its key in the port's table: the order of accepts.
    id: u64,
    timeouts: Timeouts,
    accepted: Instant,
    /// Cancelled to close the socket (eviction, timeout).
    close: CancellationToken,
    activity: Mutex<Activity>,
}

/// What a connection has been doing.
#[derive(Debug, Clone, Copy)]
struct Activity {
    /// Requests begun (their head has arrived).
    started: u64,
    /// Requests begun and not finished (their response still going).
    active: u32,
    /// A response has been sent: the connection is a client's, not
    /// something to evict.
    answered: bool,
    /// When `active` last fell to zero.
    idle_since: Instant,
    /// Sweeps that found no request going since the last change.
    quiet_sweeps: u32,
}

impl Conn {
    fn new(id: u64, timeouts: Timeouts) -> Self {
        let now = Instant::now();
        Self {
            id,
            timeouts,
            accepted: now,
            close: CancellationToken::new(),
            activity: Mutex::new(Activity {
                started: 0,
                active: 0,
                answered: false,
                idle_since: now,
                quiet_sweeps: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn activity(&self) -> Activity {
        *self.lock()
    }

    pub(crate) fn request_started(&self) {
        let mut a = self.lock();
        a.started += 1;
        a.active += 1;
        a.quiet_sweeps = 0;
    }

    pub(crate) fn body_timeout(&self) -> Duration {
        self.timeouts.body
    }

    pub(crate) fn answered(&self) {
        self.lock().answered = true;
    }

    pub(crate) fn request_ended(&self) {
        let mut a = self.lock();
        a.active = a.active.saturating_sub(1);
        if a.active == 0 {
            a.idle_since = Instant::now();
            a.quiet_sweeps = 0;
        }
    }

    /// One sweep, `every` after the last: why the connection should be
    /// closed now, if it should.
    ///
    /// A connection is late once it has been quiet (no request going) for
    /// its timeout on the clock *and* through as many sweeps: time the
    /// process spent stopped (SIGSTOP, a suspended box) does not count, so
    /// that a process that comes back does not close, all at once, the
    /// connections its clients are about to use again.
    fn swept(&self, now: Instant, every: Duration) -> Option<&'static str> {
        let mut a = self.lock();
        if a.active > 0 {
            // A request's body has its own deadline; a response may stream.
            return None;
        }
        a.quiet_sweeps = a.quiet_sweeps.saturating_add(1);
        let (since, timeout, why) = if a.started == 0 {
            (
                self.accepted,
                self.timeouts.opening,
                "no request in time after connecting",
            )
        } else {
            (
                a.idle_since,
                self.timeouts.idle,
                "idle too long between requests",
            )
        };
        let watched = every.saturating_mul(a.quiet_sweeps);
        (now.saturating_duration_since(since) >= timeout && watched >= timeout).then_some(why)
    }
}

#[cfg(test)]
mod tests;
