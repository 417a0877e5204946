//! A real MQTT broker for the Home Assistant tests: Debian's mosquitto as
//! a child process on a loopback port, and a client that records what it
//! sees (as Home Assistant would) and publishes commands.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::process::{Child, Command};

use crate::{BOUND, poll};

/// Where Debian puts mosquitto (`/usr/sbin`, often not on a user's PATH).
fn mosquitto_binary() -> PathBuf {
    let found = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("mosquitto is not installed: `apt-get install mosquitto` (scripts/test does it)")
    })
}

/// A loopback port free now. mosquitto cannot listen on port 0 and say
/// which port it got: the tests take one from the kernel and hand it over
/// (for a second listener too, in `extra`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// mosquitto on `127.0.0.1:port`, configured by `mosquitto.conf` in its
/// own directory. Killed on drop.
pub struct Mosquitto {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// A broker on a free port. `extra` is added to its config (users,
    /// ACLs); without it, anyone may connect.
    pub async fn start(dir: &Path, extra: &str) -> Self {
        // The same port is used again by `restart`, as a real broker's is.
        let port = free_port();
        std::fs::create_dir_all(dir).expect("broker dir");
        let anonymous = if extra.contains("password_file") {
            "false"
        } else {
            "true"
        };
        // As root, mosquitto would switch to its own user, who cannot read
        // the test's private temporary directory (password and ACL files).
        let user = if nix::unistd::geteuid().is_root() {
            "user root\n"
        } else {
            ""
        };
        std::fs::write(
            dir.join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous {anonymous}\npersistence false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n{user}{extra}\n"
            ),
        )
        .expect("write mosquitto.conf");
        let mut broker = Self {
            port,
            dir: dir.to_owned(),
            child: None,
        };
        broker.run().await;
        broker
    }

    /// `mqtt://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        // Ready when it accepts connections.
        let port = self.port;
        poll(
            "mosquitto to accept connections",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
            |up| *up,
        )
        .await;
    }

    /// Stops the broker (SIGTERM) and waits for it to exit. What it held
    /// (retained messages, sessions) is gone: it keeps no persistence.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            tokio::time::timeout(BOUND, child.wait())
                .await
                .expect("mosquitto exits on SIGTERM")
                .expect("wait for mosquitto");
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.run().await;
    }
}

/// A mosquitto password file for these users (`mosquitto_passwd`, which
/// comes with the broker), at `path`.
pub async fn mosquitto_passwords(path: &Path, users: &[(&str, &str)]) {
    for (i, (user, password)) in users.iter().enumerate() {
        let mut command = Command::new("mosquitto_passwd");
        if i == 0 {
            command.arg("-c");
        }
        let status = command
            .arg("-b")
            .arg(path)
            .args([user, password])
            .stdout(Stdio::null())
            .status()
            .await
            .expect("run mosquitto_passwd");
        assert!(status.success(), "mosquitto_passwd for {user}: {status}");
    }
}

/// One message as a subscriber received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: String,
    /// Delivered as a retained message (it was on the broker before we
    /// subscribed).
    pub retain: bool,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.topic, self.payload))
    }
}

/// A client subscribed to some topic filters, recording every message.
pub struct MqttWatcher {
    client: AsyncClient,
    seen: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MqttWatcher {
    /// Connects (as `user` with `password`, if given), subscribes to
    /// `filters`, and returns once the broker has acknowledged them (or
    /// the connection, without filters): from then on, every message
    /// (retained ones first) is recorded.
    pub async fn connect(port: u16, filters: &[&str], login: Option<(&str, &str)>) -> Self {
        // One id per watcher: a broker throws off the older of two
        // clients with one id.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut options = MqttOptions::new(
            format!("test-watcher-{}-{n}", std::process::id()),
            "127.0.0.1",
            port,
        );
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1 << 20, 1 << 20);
        if let Some((user, password)) = login {
            options.set_credentials(user, password);
        }
        let (client, mut events) = AsyncClient::new(options, 64);
        for filter in filters {
            client
                .subscribe(*filter, QoS::AtLeastOnce)
                .await
                .expect("queue a subscription");
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let record = Arc::clone(&seen);
        let wanted = filters.len();
        let task = tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            let mut acks = 0;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) if wanted == 0 => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        acks += 1;
                        if acks == wanted
                            && let Some(tx) = subscribed_tx.take()
                        {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        record.lock().expect("seen lock").push(Received {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    // The watcher of a test is not meant to outlive its
                    // broker: a lost connection ends it.
                    Err(_) => return,
                }
            }
        });
        tokio::time::timeout(BOUND, subscribed)
            .await
            .expect("the broker acknowledges the subscriptions")
            .expect("the watcher's connection stays up");
        Self { client, seen, task }
    }

    /// Every message received so far.
    pub fn all(&self) -> Vec<Received> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// The last message on `topic`.
    pub fn last(&self, topic: &str) -> Option<Received> {
        self.all().into_iter().rev().find(|m| m.topic == topic)
    }

    /// How many messages came on `topic`.
    pub fn count(&self, topic: &str) -> usize {
        self.all().iter().filter(|m| m.topic == topic).count()
    }

    /// The last messages, by topic.
    pub fn latest(&self) -> HashMap<String, Received> {
        self.all()
            .into_iter()
            .map(|m| (m.topic.clone(), m))
            .collect()
    }

    /// Waits until the last message on `topic` satisfies `done`.
    pub async fn wait_for(&self, topic: &str, done: impl Fn(&Received) -> bool) -> Received {
        let last = poll(
            &format!("a message on {topic}"),
            || async { self.last(topic) },
            |m| m.as_ref().is_some_and(&done),
        )
        .await;
        last.expect("checked by poll")
    }

    /// Waits up to `bound` until the last message on `topic` satisfies
    /// `done`; `None` if it did not, for a caller that has more to say
    /// than [`wait_for`](Self::wait_for)'s panic (a program's log), or
    /// that must wait longer than [`BOUND`].
    pub async fn wait_for_within(
        &self,
        bound: Duration,
        topic: &str,
        done: impl Fn(&Received) -> bool,
    ) -> Option<Received> {
        tokio::time::timeout(bound, async {
            loop {
                if let Some(m) = self.last(topic).filter(&done) {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .ok()
    }

    /// Publishes `payload` on `topic` (QoS 1), retained or not.
    pub async fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .await
            .expect("queue a message");
    }
}

impl Drop for MqttWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
