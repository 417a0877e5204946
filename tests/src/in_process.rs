//! Services served in-process, each by its own library's `serve`, on
//! `127.0.0.1:0` (or a listener the test keeps, to restart on the same
//! port): a real tonic server called by a real client, with the test
//! holding its settings, its board and its stop. The service tests and the
//! controller's in-process tests share this; the end-to-end tests run the
//! binaries instead ([`crate::ServiceProcess`]).
//!
//! - [`InProcess`]: one served service, whatever it is.
//! - [`relay`]: the relay-service on every board (simulated, and the real
//!   libphidget22 on a virtual 1017), and what a test can do to the
//!   hardware under it.
//! - [`forecast`]: the forecast-service, with its client's calls and
//!   settings against the Ecowatt stand-in.
//! - [`controller`]: the controller, with a relay-service and a
//!   forecast-service of its own.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::BOUND;

pub mod controller;
pub mod forecast;
pub mod relay;

/// What a served service waits on to stop: the test's [`InProcess::stop`]
/// (or the test's end).
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service served in-process until [`InProcess::stop`].
pub struct InProcess<E> {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), E>>,
}

/// Binds `127.0.0.1:0`.
pub async fn any_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

impl<E: Debug + Send + 'static> InProcess<E> {
    /// Serves `serve(listener, shutdown)` on a task of its own. The
    /// listener is bound: a client connecting now does not race it.
    pub fn spawn<F>(listener: TcpListener, serve: impl FnOnce(TcpListener, Shutdown) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async {
            let _ = stopped.await;
        });
        Self {
            addr,
            stop,
            task: tokio::spawn(serve(listener, shutdown)),
        }
    }

    /// Its address as a client's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client channel to it, connecting on first use.
    pub fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("a URL")
            .connect_lazy()
    }

    /// Stops it and checks it stopped in time and without error.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(BOUND, self.task)
            .await
            .expect("the service stops within the bound")
            .expect("its task")
            .expect("serve returns Ok");
    }
}
