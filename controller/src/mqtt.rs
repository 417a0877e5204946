//! Home Assistant over MQTT (`--mqtt URL`, `[mqtt]`): the controller
//! announces its entities by MQTT discovery, keeps retained state topics
//! up to date, and takes overrides from command topics.
//!
//! - [`discovery`]: the topics and Home Assistant's config messages.
//! - [`state`]: the state payloads and the commands. Both pure.
//!
//! Here, the I/O. The broker is never in the controller's way: this task
//! only reads the controller's status and calls the same override path as
//! gRPC; while the broker is away it reconnects with back-off, and on each
//! connection it publishes everything again (level-triggered, like the
//! reconciler: what the broker has is compared with what should be).

mod discovery;
mod state;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use delestage_runtime::backoff::Backoff;
use jiff::{SignedDuration, Timestamp};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
    Publish, QoS, TlsConfiguration, Transport,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::discovery::{OFFLINE, ONLINE, Topics};
use self::state::Command;
use crate::Error;
use crate::config::MqttSettings;
use crate::enforce::Controller;
use crate::wire::status_to_pb;

/// Between two connection attempts, doubling while the broker is away.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(15));
/// How long a connection must stay up before a drop retries from the
/// shortest wait again.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// States are compared with what the broker has this often too, so that
/// the next tense hour follows the clock between status changes.
const REFRESH: Duration = Duration::from_secs(60);

/// How long a clean stop may take to say `offline` and disconnect.
const GOODBYE: Duration = Duration::from_secs(2);

const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The meter's topic goes out at most this often.
const METER_EVERY: Duration = Duration::from_secs(5);

/// The largest message sent or acted on: anything larger that comes in is
/// dropped with a warning.
const MAX_MESSAGE: usize = 256 * 1024;
/// The largest packet read. rumqttc drops the connection on a packet over
/// its limit, so the limit is set far above [`MAX_MESSAGE`]: one retained
/// 1 MB message on a topic we watch (which Home Assistant may write) must
/// not make the controller reconnect forever. Larger still breaks the
/// connection, and the back-off then grows.
const MAX_READ: usize = 16 * 1024 * 1024;

/// The connection's options: reads the password and the CA now, so that a
/// missing file stops the controller at start rather than failing quietly
/// in the background.
pub(crate) fn client_options(settings: &MqttSettings) -> Result<MqttOptions, Error> {
    let broker = &settings.broker;
    let mut options = MqttOptions::new(&settings.client_id, &broker.host, broker.port);
    options.set_keep_alive(KEEP_ALIVE);
    options.set_clean_session(true);
    // Our own state topics come back to us (we watch them for loads that
    // are gone): room for a large one; what is too large is read and
    // dropped (see MAX_READ).
    options.set_max_packet_size(MAX_READ, MAX_MESSAGE);
    options.set_last_will(LastWill::new(
        Topics::new(&settings.prefix, &settings.discovery_prefix).availability(),
        OFFLINE,
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &settings.username {
        let password = match &settings.password_file {
            Some(path) => read_password(path)?,
            None => String::new(),
        };
        options.set_credentials(user, password);
    }
    if broker.tls {
        options.set_transport(Transport::tls_with_config(tls(settings)?));
    }
    Ok(options)
}

/// The password file's first line. Like the tokens file, refused when
/// others may write it.
fn read_password(path: &std::path::Path) -> Result<String, Error> {
    delestage_runtime::files::check_private(path, "mqtt.password_file")?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("mqtt.password_file {}: {e}", path.display())))?;
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        return Err(Error::Config(format!(
            "mqtt.password_file {}: the first line is empty",
            path.display()
        )));
    }
    Ok(password.to_owned())
}

/// rustls with ring, trusting `tls_ca` or else the system's CAs.
fn tls(settings: &MqttSettings) -> Result<TlsConfiguration, Error> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.tls_ca {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                Error::Config(format!("mqtt.tls_ca {}: {e}", path.display()))
            };
            for der in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(der.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system CA rustls cannot parse is no reason to stop.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(Error::Config(
                    "mqtt: no system CA certificates found for mqtts; give the broker's CA with --mqtt-tls-ca"
                        .to_owned(),
                ));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Config(format!("mqtt TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// What the connection task reports.
enum Link {
    /// Connected (again): publish everything.
    Up,
    Message(Publish),
    /// Lost, or not reached; it tries again after a back-off.
    Down(String),
}

/// Publishes and listens until `closing`; then says `offline` and leaves.
pub(crate) async fn run(
    settings: MqttSettings,
    options: MqttOptions,
    controller: Arc<Controller>,
    closing: CancellationToken,
) {
    let topics = Topics::new(&settings.prefix, &settings.discovery_prefix);
    let loads: Vec<String> = controller.loads().iter().map(|l| l.name.clone()).collect();
    let configs = discovery::configs(
        &topics,
        loads.iter().map(String::as_str),
        controller.follows_meter(),
        env!("CARGO_PKG_VERSION"),
    );
    // Room for everything published on connection, twice over.
    let burst = configs.len() + loads.len() + 8;
    let (client, events) = AsyncClient::new(options, 2 * burst);
    let (tx, mut links) = mpsc::channel(64);
    let stopping = CancellationToken::new();
    let connection = tokio::spawn(drive(events, tx, stopping.clone()));

    let config_topics = configs.iter().map(|(t, _)| t.clone()).collect();
    let mut node = Node {
        settings: &settings,
        topics,
        configs,
        config_topics,
        loads: loads.into_iter().collect(),
        client,
        controller: &controller,
        sent: HashMap::new(),
        meter_sent_at: None,
        too_soon_said: std::sync::Mutex::new(None),
        connected: false,
        failures: 0,
        last_problem: None,
        down_since: None,
    };
    tracing::info!(broker = %settings.broker.url(), client_id = %settings.client_id, prefix = %settings.prefix, discovery_prefix = %settings.discovery_prefix, "publishing to Home Assistant over MQTT");

    let mut status = controller.watch_status();
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = closing.cancelled() => break,
            link = links.recv() => match link {
                Some(Link::Up) => node.connected(),
                Some(Link::Down(why)) => node.disconnected(why),
                Some(Link::Message(message)) => node.received(message).await,
                None => break,
            },
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                node.publish_states();
            }
            _ = refresh.tick() => node.publish_states(),
        }
    }

    // A clean goodbye when connected: `offline`, retained, then DISCONNECT
    // (the broker drops the last will then).
    if node.connected {
        node.publish(&node.topics.availability(), OFFLINE.to_owned());
        let _ = node.client.try_disconnect();
    }
    stopping.cancel();
    let mut connection = connection;
    if tokio::time::timeout(GOODBYE, &mut connection)
        .await
        .is_err()
    {
        connection.abort();
    }
}

/// Polls the connection (which reconnects when polled again after an
/// error), with a back-off between failed attempts. Apart from the
/// publishing side, so that a slow broker never holds up a status update
/// and `poll` is never cancelled half-way.
async fn drive(mut events: EventLoop, tx: mpsc::Sender<Link>, stopping: CancellationToken) {
    let mut retry = RECONNECT.start();
    let mut up_since: Option<tokio::time::Instant> = None;
    loop {
        let link = match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                up_since = Some(tokio::time::Instant::now());
                Link::Up
            }
            Ok(Event::Incoming(Packet::Publish(message)))
                if message.payload.len() > MAX_MESSAGE =>
            {
                tracing::warn!(
                    topic = %message.topic,
                    bytes = message.payload.len(),
                    limit = MAX_MESSAGE,
                    "dropped an MQTT message over the size limit"
                );
                continue;
            }
            Ok(Event::Incoming(Packet::Publish(message))) => Link::Message(message),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => continue,
            Err(e) => {
                if stopping.is_cancelled() {
                    return;
                }
                // Only a connection that held starts the back-off over: a
                // broker that accepts, then drops us at once (a message we
                // cannot take, an ACL), is retried ever more slowly.
                if up_since
                    .take()
                    .is_some_and(|since| since.elapsed() >= STABLE_AFTER)
                {
                    retry.succeeded();
                }
                let _ = tx.send(Link::Down(describe(&e))).await;
                tokio::select! {
                    _ = stopping.cancelled() => return,
                    _ = tokio::time::sleep(retry.failed()) => {}
                }
                continue;
            }
        };
        if tx.send(link).await.is_err() {
            return;
        }
    }
}

/// A connection error in words, with what to check when it is ours.
fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => format!(
            "the broker refused the connection ({code:?}): check username, password_file and the broker's ACL"
        ),
        other => other.to_string(),
    }
}

/// The publishing side: what the broker has, and what it should have.
struct Node<'a> {
    settings: &'a MqttSettings,
    topics: Topics,
    configs: Vec<discovery::Config>,
    config_topics: HashSet<String>,
    loads: HashSet<String>,
    client: AsyncClient,
    controller: &'a Controller,
    /// State payloads the broker has from this connection, by topic.
    sent: HashMap<String, String>,
    /// When the meter's topic was last published: at most every
    /// [`METER_EVERY`], although a reading comes every 1–2 s.
    meter_sent_at: Option<tokio::time::Instant>,
    connected: bool,
    /// Failed attempts in a row, and the last problem logged (a broker
    /// away for hours logs once, not every few seconds).
    failures: u32,
    last_problem: Option<String>,
    down_since: Option<Timestamp>,
    /// When a command dropped for coming too soon was last said (at most
    /// once a minute: a flood must not flood the log too).
    too_soon_said: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Node<'_> {
    fn connected(&mut self) {
        self.connected = true;
        metrics::gauge!("controller_mqtt_connected").set(1.0);
        let away = self
            .down_since
            .take()
            .map(|since| Timestamp::now().duration_since(since).as_secs());
        tracing::info!(
            broker = %self.settings.broker.url(),
            failed_attempts = self.failures,
            away_seconds = away,
            "connected to the MQTT broker"
        );
        self.failures = 0;
        self.last_problem = None;
        let subscriptions = [
            self.topics.override_set_filter(),
            self.topics.ha_status(),
            self.topics.configs_filter(),
            self.topics.load_state_filter(),
        ];
        for topic in subscriptions {
            if let Err(e) = self.client.try_subscribe(&topic, QoS::AtLeastOnce) {
                tracing::warn!(%topic, error = %e, "could not subscribe");
            }
        }
        self.publish(&self.topics.availability(), ONLINE.to_owned());
        self.publish_discovery();
        self.sent.clear();
        self.publish_states();
    }

    fn disconnected(&mut self, why: String) {
        metrics::gauge!("controller_mqtt_connected").set(0.0);
        self.failures += 1;
        if self.connected {
            tracing::warn!(broker = %self.settings.broker.url(), error = %why, "lost the MQTT broker; reconnecting (the controller goes on without it)");
            self.down_since = Some(Timestamp::now());
        } else if self.last_problem.as_deref() != Some(why.as_str()) {
            tracing::warn!(broker = %self.settings.broker.url(), error = %why, attempts = self.failures, "cannot reach the MQTT broker; retrying with back-off (the controller goes on without it)");
            self.down_since.get_or_insert_with(Timestamp::now);
        } else {
            tracing::debug!(error = %why, attempts = self.failures, "MQTT broker still unreachable");
        }
        self.last_problem = Some(why);
        self.connected = false;
        self.sent.clear();
    }

    /// Every discovery config, retained.
    fn publish_discovery(&self) {
        for (topic, config) in &self.configs {
            self.publish(topic, config.to_string());
        }
    }

    /// The state topics whose payload differs from what the broker has.
    fn publish_states(&mut self) {
        if !self.connected {
            return;
        }
        let status = self.controller.status();
        let pb = status_to_pb(&status);
        let hours = match status.forecast.usable {
            true => self.controller.forecast_hours(),
            false => Arc::default(),
        };
        for (topic, payload) in state::messages(&self.topics, &pb, &hours, Timestamp::now()) {
            if self.sent.get(&topic) == Some(&payload) {
                continue;
            }
            let is_meter = topic == self.topics.meter();
            if is_meter
                && self
                    .meter_sent_at
                    .is_some_and(|at| at.elapsed() < METER_EVERY)
            {
                continue;
            }
            // Not recorded when it could not be queued: the next pass
            // tries again.
            if self.publish(&topic, payload.clone()) {
                if is_meter {
                    self.meter_sent_at = Some(tokio::time::Instant::now());
                }
                self.sent.insert(topic, payload);
            }
        }
    }

    /// Queues a retained message; false if the queue is full.
    fn publish(&self, topic: &str, payload: String) -> bool {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, payload)
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(%topic, error = %e, "MQTT message not queued; tried again later");
                false
            }
        }
    }

    async fn received(&mut self, message: Publish) {
        let topic = message.topic.clone();
        if topic == self.topics.ha_status() {
            // A retained `online` is what the broker holds, delivered as
            // we subscribed: the configs just went out with the
            // connection. Only a live one (Home Assistant started since)
            // asks for them again.
            if message.payload.as_ref() == ONLINE.as_bytes() && !message.retain {
                tracing::info!("Home Assistant is online; publishing discovery again");
                self.publish_discovery();
            }
        } else if let Some(load) = self.topics.load_of_command(&topic) {
            let load = load.to_owned();
            self.command(&load, &message).await;
        } else if let Some(load) = self.topics.load_of_state(&topic) {
            // A retained state of a load no longer configured.
            if !self.loads.contains(load) && !message.payload.is_empty() {
                tracing::info!(%load, "clearing the MQTT state of a load that is no longer configured");
                self.publish(&topic, String::new());
            }
        } else if topic.ends_with("/config")
            && !self.config_topics.contains(&topic)
            && !message.payload.is_empty()
        {
            // One of our entities from an earlier configuration (a load
            // renamed or removed): an empty config removes it.
            tracing::info!(%topic, "removing a Home Assistant entity that is no longer configured");
            self.publish(&topic, String::new());
        }
    }

    /// `ON`, `OFF` or `CLEAR` for a load, through the same path as gRPC.
    async fn command(&self, load: &str, message: &Publish) {
        if message.payload.is_empty() {
            // Someone clearing a retained command: nothing is asked.
            tracing::debug!(%load, "empty MQTT command ignored");
            return;
        }
        if message.retain {
            // Sent with the flag only on (re)subscription: a command
            // someone published retained, which would otherwise be applied
            // again at every reconnection, long after it was meant.
            tracing::warn!(%load, "ignored a retained MQTT command; publish commands without the retain flag");
            return;
        }
        let command = match state::parse_command(&message.payload) {
            Ok(command) => command,
            Err(why) => {
                tracing::warn!(%load, error = %why, "ignored an MQTT command");
                return;
            }
        };
        if !self.loads.contains(load) {
            tracing::warn!(%load, "ignored an MQTT command for a load that is not configured");
            return;
        }
        let done = match command {
            Command::Override { powered } => {
                // `Timestamp + duration` would panic past year 9999.
                let until = SignedDuration::try_from(self.settings.override_duration)
                    .ok()
                    .and_then(|d| Timestamp::now().checked_add(d).ok())
                    .ok_or_else(|| {
                        Error::InvalidArgument(
                            "mqtt.override_duration reaches past the last date there is".to_owned(),
                        )
                    });
                match until {
                    Ok(until) => self
                        .controller
                        .set_override(load, powered, until, false, "mqtt")
                        .await
                        .map(drop),
                    Err(e) => Err(e),
                }
            }
            Command::Clear => self.controller.clear_override(load, "mqtt").await.map(drop),
        };
        match done {
            Ok(()) => {}
            Err(Error::TooSoon(why)) => {
                let now = tokio::time::Instant::now();
                let mut said = self.too_soon_said.lock().unwrap_or_else(|p| p.into_inner());
                if said.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60)) {
                    *said = Some(now);
                    tracing::warn!(%load, %why, "MQTT command dropped (said at most once a minute)");
                }
            }
            Err(e) => tracing::error!(%load, error = %e, "MQTT command failed"),
        }
    }
}
