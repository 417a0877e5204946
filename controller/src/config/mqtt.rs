//! The `[mqtt]` table and its `--mqtt*` flags: where the Home Assistant
//! broker is and what the controller publishes there (see [`crate::mqtt`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[mqtt]`: Home Assistant over MQTT. Off unless a URL is given.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct MqttOptions {
    /// Publish to Home Assistant through this MQTT broker:
    /// mqtt://HOST[:1883] or mqtts://HOST[:8883]. Off unless given. In the
    /// file: `url` in `[mqtt]`.
    #[arg(long = "mqtt", value_name = "URL")]
    pub url: Option<String>,

    /// The user to log in to the broker as.
    #[arg(long = "mqtt-username", value_name = "NAME")]
    pub username: Option<String>,

    /// A file holding that user's password (never logged).
    #[arg(long = "mqtt-password-file", value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// The MQTT client id; two clients with one id throw each other off
    /// the broker [default: delestage-PREFIX].
    #[arg(long = "mqtt-client-id", value_name = "ID")]
    pub client_id: Option<String>,

    /// The root of the state and command topics (`PREFIX/level`,
    /// `PREFIX/load/NAME/state`, ...). One per controller on a broker.
    #[arg(
        long = "mqtt-prefix",
        value_name = "TOPIC",
        default_value = "delestage"
    )]
    pub prefix: String,

    /// Home Assistant's discovery prefix (its MQTT integration's setting).
    #[arg(
        long = "mqtt-discovery-prefix",
        value_name = "TOPIC",
        default_value = "homeassistant"
    )]
    pub discovery_prefix: String,

    /// How long an override from Home Assistant (its "override" switch)
    /// lasts.
    #[arg(long = "mqtt-override-duration", value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "2h")]
    #[serde(with = "humantime_serde")]
    pub override_duration: Duration,

    /// With mqtts: the CA that signed the broker's certificate (PEM)
    /// [default: the system's CAs].
    #[arg(long = "mqtt-tls-ca", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

/// How the broker is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Broker {
    /// The URL as people wrote it, normalised (for logs; it holds no
    /// secret: a password in the URL is refused).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        match self.host.contains(':') {
            true => format!("{scheme}://[{}]:{}", self.host, self.port),
            false => format!("{scheme}://{}:{}", self.host, self.port),
        }
    }
}

/// The checked `[mqtt]` settings.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub broker: Broker,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub client_id: String,
    pub prefix: String,
    pub discovery_prefix: String,
    pub override_duration: Duration,
    pub tls_ca: Option<PathBuf>,
}

/// Checks `[mqtt]`; `Ok(None)` when no URL is given (MQTT off). An error
/// is the key that is wrong and why.
pub(super) fn resolve(o: &MqttOptions) -> Result<Option<MqttSettings>, (&'static str, String)> {
    let Some(url) = &o.url else {
        for (key, set) in [
            ("mqtt.username", o.username.is_some()),
            ("mqtt.password_file", o.password_file.is_some()),
            ("mqtt.client_id", o.client_id.is_some()),
            ("mqtt.tls_ca", o.tls_ca.is_some()),
        ] {
            if set {
                return Err((
                    key,
                    "means nothing without the broker's URL (--mqtt, or url in [mqtt])".to_owned(),
                ));
            }
        }
        return Ok(None);
    };
    let broker = parse_url(url).map_err(|why| ("mqtt.url", why))?;
    check_topic(&o.prefix).map_err(|why| ("mqtt.prefix", why))?;
    check_topic(&o.discovery_prefix).map_err(|why| ("mqtt.discovery_prefix", why))?;
    if o.prefix == o.discovery_prefix {
        return Err((
            "mqtt.prefix",
            format!(
                "{:?} is also the discovery prefix: give the states a topic of their own",
                o.prefix
            ),
        ));
    }
    if o.password_file.is_some() && o.username.is_none() {
        return Err((
            "mqtt.password_file",
            "needs a username (--mqtt-username, or username in [mqtt])".to_owned(),
        ));
    }
    if o.username.as_deref() == Some("") {
        return Err(("mqtt.username", "must not be empty".to_owned()));
    }
    if o.tls_ca.is_some() && !broker.tls {
        return Err((
            "mqtt.tls_ca",
            "only means something with an mqtts:// URL".to_owned(),
        ));
    }
    let client_id = match &o.client_id {
        Some(id) if id.is_empty() => {
            return Err(("mqtt.client_id", "must not be empty".to_owned()));
        }
        Some(id) => id.clone(),
        None => format!("delestage-{}", o.prefix.replace('/', "-")),
    };
    if o.override_duration.is_zero() {
        return Err((
            "mqtt.override_duration",
            "must be more than zero".to_owned(),
        ));
    }
    let longest = Duration::from_secs(24 * 3600 * crate::store::OVERRIDE_MAX_DAYS as u64);
    if o.override_duration > longest {
        return Err((
            "mqtt.override_duration",
            format!(
                "{}: an override lasts {} days at most",
                humantime::format_duration(o.override_duration),
                crate::store::OVERRIDE_MAX_DAYS
            ),
        ));
    }
    Ok(Some(MqttSettings {
        broker,
        username: o.username.clone(),
        password_file: o.password_file.clone(),
        client_id,
        prefix: o.prefix.clone(),
        discovery_prefix: o.discovery_prefix.clone(),
        override_duration: o.override_duration,
        tls_ca: o.tls_ca.clone(),
    }))
}

/// `mqtt://host[:port]` or `mqtts://host[:port]`, nothing more.
fn parse_url(text: &str) -> Result<Broker, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    let tls = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        other => {
            return Err(format!(
                "{text:?}: the scheme is {other:?}; write mqtt://HOST:1883 or mqtts://HOST:8883"
            ));
        }
    };
    if url.password().is_some() || !url.username().is_empty() {
        return Err(
            "put no user or password in the URL (it is logged): use username and password_file in [mqtt]"
                .to_owned(),
        );
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err(format!("{text:?} names no host; write mqtt://HOST:1883")),
    };
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?}: only mqtt://HOST:PORT; the topics are set by prefix and discovery_prefix"
        ));
    }
    Ok(Broker {
        host,
        port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
        tls,
    })
}

/// A topic prefix: levels without wildcards, not a system topic.
fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(format!(
            "{topic:?}: '+', '#' are MQTT wildcards, not allowed"
        ));
    }
    if topic.starts_with('$') {
        return Err(format!(
            "{topic:?}: topics starting with '$' are the broker's"
        ));
    }
    if topic.split('/').any(str::is_empty) {
        return Err(format!(
            "{topic:?}: no empty level (no leading, trailing or double '/')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: Option<&str>) -> MqttOptions {
        MqttOptions {
            url: url.map(str::to_owned),
            username: None,
            password_file: None,
            client_id: None,
            prefix: "delestage".to_owned(),
            discovery_prefix: "homeassistant".to_owned(),
            override_duration: Duration::from_secs(7200),
            tls_ca: None,
        }
    }

    #[test]
    fn urls_give_host_port_and_tls() {
        let b = parse_url("mqtt://broker.lan").expect("ok");
        assert_eq!(
            (b.host.as_str(), b.port, b.tls),
            ("broker.lan", 1883, false)
        );
        let b = parse_url("mqtts://10.0.0.2").expect("ok");
        assert_eq!((b.host.as_str(), b.port, b.tls), ("10.0.0.2", 8883, true));
        let b = parse_url("mqtt://[::1]:1884/").expect("ok");
        assert_eq!((b.host.as_str(), b.port), ("::1", 1884));
        assert_eq!(b.url(), "mqtt://[::1]:1884");
    }

    #[test]
    fn bad_urls_say_why() {
        for (url, says) in [
            ("http://broker:1883", "scheme"),
            ("broker:1883", "scheme"),
            ("mqtt://u:secret@broker", "no user or password"),
            ("mqtt://broker/topic", "only mqtt://HOST:PORT"),
            ("mqtt://", "names no host"),
        ] {
            let why = parse_url(url).expect_err("an error");
            assert!(why.contains(says), "{url}: {why}");
            assert!(!why.contains("secret"), "{why}");
        }
    }

    #[test]
    fn off_without_url_and_defaults_with_one() {
        assert!(resolve(&options(None)).expect("ok").is_none());
        let s = resolve(&options(Some("mqtt://127.0.0.1:1883")))
            .expect("ok")
            .expect("ok");
        assert_eq!(s.client_id, "delestage-delestage");
        assert_eq!(s.override_duration, Duration::from_secs(7200));
    }

    #[test]
    fn keys_without_url_or_out_of_place_are_named() {
        let mut o = options(None);
        o.username = Some("ha".to_owned());
        assert_eq!(resolve(&o).expect_err("an error").0, "mqtt.username");

        let mut o = options(Some("mqtt://b"));
        o.password_file = Some("/p".into());
        assert_eq!(resolve(&o).expect_err("an error").0, "mqtt.password_file");

        let mut o = options(Some("mqtt://b"));
        o.tls_ca = Some("/ca.pem".into());
        assert_eq!(resolve(&o).expect_err("an error").0, "mqtt.tls_ca");

        let mut o = options(Some("mqtt://b"));
        o.override_duration = Duration::ZERO;
        assert_eq!(
            resolve(&o).expect_err("an error").0,
            "mqtt.override_duration"
        );
    }

    #[test]
    fn prefixes_are_plain_topics() {
        for bad in ["", "a/+/b", "home/#", "$SYS", "/x", "x/", "a//b"] {
            let mut o = options(Some("mqtt://b"));
            o.prefix = bad.to_owned();
            assert_eq!(
                resolve(&o).expect_err("an error").0,
                "mqtt.prefix",
                "{bad:?}"
            );
        }
        let mut o = options(Some("mqtt://b"));
        o.prefix = "house/delestage".to_owned();
        let s = resolve(&o).expect("ok").expect("ok");
        assert_eq!(s.client_id, "delestage-house-delestage");
        o.discovery_prefix = "house/delestage".to_owned();
        assert_eq!(resolve(&o).expect_err("an error").0, "mqtt.prefix");
    }
}
