use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

/// A service with a bit of everything: a flag with a default, an optional
/// duration, a section, a table only
/// the file has.
#[derive(Debug, clap::Parser, Serialize, Deserialize)]
#[command(name = "sample")]
struct Sample {
    #[command(flatten)]
    #[serde(skip)]
    common: CommonOptions,

    /// How many.
    #[arg(long, default_value_t = 8)]
    channels: u32,

    /// How long.
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    hold: Option<Duration>,

    #[command(flatten)]
    policy: Policy,

    #[arg(skip)]
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, clap::Args, Serialize, Deserialize)]
struct Policy {
    /// Between restores.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    #[serde(with = "humantime_serde")]
    restore_stagger: Duration,
}

impl ServiceOptions for Sample {
    const NAME: &'static str = "sample";
    const DEFAULT_LISTEN: &'static str = "127.0.0.1:50099";
    const DEFAULT_MAX_STREAMS: &'static str = "100";
    fn common(&self) -> &CommonOptions {
        &self.common
    }
    fn common_mut(&mut self) -> &mut CommonOptions {
        &mut self.common
    }
}

fn file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sample.toml");
    std::fs::write(&path, text).expect("write");
    let path = path.to_str().expect("utf-8").to_owned();
    (dir, path)
}

fn load(args: &[&str]) -> Result<Loaded<Sample>, Error> {
    Loaded::<Sample>::from_args(std::iter::once("sample").chain(args.iter().copied()))
}

#[test]
fn defaults_come_from_the_flags_declarations() {
    let l = load(&[]).expect("defaults");
    assert_eq!(l.options.common.listen, "127.0.0.1:50099");
    assert_eq!(l.options.common.log_format, LogFormat::Text);
    assert_eq!(l.options.channels, 8);
    assert_eq!(l.options.hold, None);
    assert_eq!(l.options.policy.restore_stagger, Duration::from_secs(30));
    assert_eq!(
        l.origins.of("channels"),
        Origin::Default("--channels".into())
    );
    assert_eq!(
        l.origins.of("policy.restore_stagger").to_string(),
        "--restore-stagger"
    );
}

#[test]
fn flag_over_file_over_default_and_each_value_knows_its_origin() {
    let (_dir, path) = file(
        r#"
listen = "127.0.0.1:7"
channels = 4
hold = "30s"
log_format = "json"

[policy]
restore_stagger = "5s"

[security]
insecure = true

[labels]
0 = "water heater"
"#,
    );
    let l = load(&["--config", &path, "--channels", "6"]).expect("loads");
    let o = &l.options;
    assert_eq!(o.channels, 6);
    assert_eq!(o.common.listen, "127.0.0.1:7");
    assert_eq!(o.common.log_format, LogFormat::Json);
    assert_eq!(o.hold, Some(Duration::from_secs(30)));
    assert_eq!(o.policy.restore_stagger, Duration::from_secs(5));
    assert!(o.common.security.insecure);
    assert_eq!(o.labels["0"], "water heater");
    assert_eq!(o.common.config.as_deref(), Some(Path::new(&path)));

    assert_eq!(l.origins.of("channels"), Origin::Flag("--channels".into()));
    assert_eq!(
        l.origins.of("listen").to_string(),
        format!("{path}: listen")
    );
    assert_eq!(
        l.origins.of("policy.restore_stagger").to_string(),
        format!("{path}: policy.restore_stagger")
    );
    assert_eq!(
        l.origins.of("labels.0").to_string(),
        format!("{path}: labels.0")
    );
    assert_eq!(l.origins.file(), Some(Path::new(&path)));
}

#[test]
fn an_unknown_key_names_the_file_and_the_key_even_in_a_section() {
    let (_dir, path) = file("lisen = \"127.0.0.1:1\"\n");
    let msg = load(&["--config", &path]).expect_err("typo").to_string();
    assert!(
        msg.contains("sample.toml") && msg.contains("`lisen`"),
        "{msg}"
    );
    assert!(msg.contains("`listen`"), "the known keys are listed: {msg}");

    let (_dir, path) = file("[security]\ntoken = \"x\"\n");
    let msg = load(&["--config", &path]).expect_err("typo").to_string();
    assert!(msg.contains("`security.token`"), "{msg}");

    // `--config` itself is not a key of the file.
    let (_dir, path) = file("config = \"other.toml\"\n");
    assert!(load(&["--config", &path]).is_err());
}

#[test]
fn a_bad_value_names_the_file_and_the_key() {
    let (_dir, path) = file("channels = \"four\"\n");
    let msg = load(&["--config", &path]).expect_err("type").to_string();
    assert!(msg.contains(&format!("{path}: channels")), "{msg}");

    let (_dir, path) = file("[policy]\nrestore_stagger = \"soon\"\n");
    let msg = load(&["--config", &path])
        .expect_err("duration")
        .to_string();
    assert!(
        msg.contains(&format!("{path}: policy.restore_stagger")),
        "{msg}"
    );

    let (_dir, path) = file("log_format = \"xml\"\n");
    let msg = load(&["--config", &path]).expect_err("enum").to_string();
    assert!(msg.contains(&format!("{path}: log_format")), "{msg}");
}

#[test]
fn a_bad_flag_is_clap_s_error() {
    let err = load(&["--channels", "many"]).expect_err("bad flag");
    assert!(matches!(err, Error::Flags(_)), "{err:?}");
    assert!(err.to_string().contains("--channels"), "{err}");
}

#[test]
fn help_shows_every_default_once() {
    let help = command::<Sample>().render_long_help().to_string();
    for default in [
        "[default: 127.0.0.1:50099]",
        "[default: 8]",
        "[default: 30s]",
    ] {
        assert!(help.contains(default), "{default} missing:\n{help}");
    }
}
