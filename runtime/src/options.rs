//! Options: one type per service, read from the command line and from the
//! `--config` TOML file, merged flag > file > default.
//!
//! A service declares its options once, as a struct that derives both
//! `clap::Parser` (the flags, their help and their defaults) and serde's
//! `Serialize`/`Deserialize` (the same names as keys of the file). The keys
//! every service has live in [`CommonOptions`], flattened into the flags and
//! kept at the top level of the file.
//!
//! The merge is generic and goes through a JSON tree:
//!
//! 1. clap parses the flags, filling in the defaults it declares (so
//!    `--help` shows them and there is no second table of defaults);
//! 2. the parsed options are serialized into a tree, which also tells which
//!    keys exist (an unknown key in the file is an error naming it);
//! 3. each key of the file replaces the tree's value unless the flag (or its
//!    environment variable) was given;
//! 4. the tree is deserialized back into the options, and every value
//!    remembers where it came from ([`Origins`]), so a validation error names
//!    the flag, or the file and the key, that gave the bad value.
//!
//! Fields that are only in the file (`[labels]`, `[[load]]`) are
//! `#[arg(skip)]`. Hidden flags (benchmark switches) and `--config` itself
//! are never read from the file.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;
use crate::security::SecurityOptions;
use crate::telemetry::LogFormat;

/// The options every service has: where it listens, keeps its state, logs,
/// serves metrics, and how it is protected.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
pub struct CommonOptions {
    /// TOML config file. Every option below can be set in it too, under its
    /// name with underscores (`state_dir = "/var/lib/x"`); flags win.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to serve gRPC on. Port 0: any free port (the log says
    /// which).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,

    /// Where the service keeps its state across restarts [default:
    /// $STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/delestage/SERVICE,
    /// else ~/.local/state/delestage/SERVICE].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Log format. RUST_LOG filters (default: info).
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Serve Prometheus metrics (GET /metrics) on this address [default:
    /// off].
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,

    /// Most Watch* streams open at once; past it a new stream gets
    /// RESOURCE_EXHAUSTED. Each open stream holds a few buffered messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,

    /// Most connections the gRPC port holds at once. At the cap, a new
    /// connection closes the oldest one that has not completed a request
    /// (idle, slow, mid-handshake); when every one has, the new one is
    /// refused. Keep it below `ulimit -n`.
    #[arg(long, value_name = "N", default_value_t = crate::connections::DEFAULT_MAX_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    #[command(flatten)]
    pub security: SecurityOptions,
}

impl CommonOptions {
    /// The state directory: as given, else the service's default.
    pub fn state_dir_or_default(&self, service: &str) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| default_state_dir(service))
    }
}

/// Where a service keeps its state when no `--state-dir` is given:
/// systemd's `$STATE_DIRECTORY` when it set one, else
/// `$XDG_STATE_HOME/delestage/<service>`, else
/// `~/.local/state/delestage/<service>`, else `./delestage-state/<service>`.
pub fn default_state_dir(service: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may pass several, colon-separated; the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        return PathBuf::from(first);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        });
    match base {
        Some(base) => base.join("delestage").join(service),
        None => PathBuf::from("delestage-state").join(service),
    }
}

/// What a service's options type tells the generic loader.
pub trait ServiceOptions: clap::Parser + Serialize + DeserializeOwned {
    /// The binary's name: messages and the default state directory.
    const NAME: &'static str;
    /// The default `--listen` address.
    const DEFAULT_LISTEN: &'static str;
    /// The default `--max-streams`: what one box of this kind can hold.
    const DEFAULT_MAX_STREAMS: &'static str;

    fn common(&self) -> &CommonOptions;
    fn common_mut(&mut self) -> &mut CommonOptions;
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, by its long name (`--listen`).
    Flag(String),
    /// The environment variable behind a flag.
    Env(String),
    /// A key of the config file (`load[0].relay`).
    File { path: PathBuf, key: String },
    /// The declared default; named after its flag, or its key if it has none.
    Default(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(name) | Origin::Default(name) => f.write_str(name),
            Origin::Env(name) => write!(f, "${name}"),
            Origin::File { path, key } => write!(f, "{}: {key}", path.display()),
        }
    }
}

/// Where each value of a set of options came from, by key (dotted for
/// tables: `security.tokens`, `policy.restore_stagger`).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    file: Option<PathBuf>,
    by_key: BTreeMap<String, Origin>,
}

impl Origins {
    /// Where `key` came from. A key inside a value taken whole from the file
    /// (`load[2].min_on`) is named as it is, in that file.
    pub fn of(&self, key: &str) -> Origin {
        if key.is_empty() || key == "." {
            return match &self.file {
                Some(path) => Origin::File {
                    path: path.clone(),
                    key: "(top level)".to_owned(),
                },
                None => Origin::Default("(top level)".to_owned()),
            };
        }
        match (self.by_key.get(key), &self.file) {
            // A key only the file has, left out: say so in the file's name.
            (Some(Origin::Default(name)), Some(path)) if !name.starts_with("--") => {
                return Origin::File {
                    path: path.clone(),
                    key: key.to_owned(),
                };
            }
            (Some(origin), _) => return origin.clone(),
            (None, _) => {}
        }
        let top = key.split(['.', '[']).next().unwrap_or(key);
        match (self.by_key.get(top), &self.file) {
            (Some(Origin::File { path, .. }), _) => Origin::File {
                path: path.clone(),
                key: key.to_owned(),
            },
            (Some(other), _) => other.clone(),
            (None, Some(path)) => Origin::File {
                path: path.clone(),
                key: key.to_owned(),
            },
            (None, None) => Origin::Default(key.to_owned()),
        }
    }

    /// The config file, if one was read.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// `"{origin}: {message}"`, the shape of every configuration error.
    pub fn error(&self, key: &str, message: impl fmt::Display) -> String {
        format!("{}: {message}", self.of(key))
    }
}

/// A service's options, and where each came from.
#[derive(Debug)]
pub struct Loaded<O> {
    pub options: O,
    pub origins: Origins,
}

impl<O: ServiceOptions> Loaded<O> {
    /// From this process's arguments. `--help`, `--version` and flag errors
    /// print and exit, as clap does; a config file error is returned.
    pub fn from_env() -> Result<Self, Error> {
        match Self::from_args(std::env::args_os()) {
            Err(Error::Flags(e)) => e.exit(),
            other => other,
        }
    }

    /// From the given arguments (the first is the program name); reads the
    /// `--config` file if they name one.
    pub fn from_args<I, T>(args: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::load(args, None)
    }

    /// From the given arguments and a config file's text, given rather than
    /// read (`path` names it in messages).
    pub fn from_args_and_text<I, T>(args: I, path: &Path, text: &str) -> Result<Self, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::load(args, Some((path, text)))
    }

    fn load<I, T>(args: I, given_file: Option<(&Path, &str)>) -> Result<Self, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = command::<O>();
        let matches = command.clone().try_get_matches_from(args)?;
        let parsed = O::from_arg_matches(&matches)?;

        let common_tree = to_object(parsed.common())?;
        let mut tree = to_object(&parsed)?;
        let common_keys: BTreeSet<String> = common_tree.keys().cloned().collect();
        tree.extend(common_tree);

        let flags = Flags::new(&command, &matches);
        let mut origins = Origins::default();
        flags.record_defaults(&tree, "", &mut origins);
        let file = match given_file {
            Some((path, text)) => Some((path.to_owned(), parse_file(path, text)?)),
            None => match &parsed.common().config {
                Some(path) => Some((path.clone(), read_file(path)?)),
                None => None,
            },
        };
        if let Some((path, file)) = file {
            merge_file(file, &mut tree, "", &path, &flags, &mut origins)?;
            origins.file = Some(path);
        }

        let (common_part, own_part): (Map<String, Value>, Map<String, Value>) =
            tree.into_iter().partition(|(k, _)| common_keys.contains(k));
        let common: CommonOptions = from_tree(common_part, &origins)?;
        let mut options: O = from_tree(own_part, &origins)?;
        let config = parsed.common().config.clone();
        *options.common_mut() = CommonOptions { config, ..common };
        Ok(Self { options, origins })
    }
}

/// The service's command, with its own default `--listen`.
pub fn command<O: ServiceOptions>() -> Command {
    O::command()
        .mut_arg("listen", |a| {
            a.default_value(O::DEFAULT_LISTEN).required(false)
        })
        .mut_arg("max_streams", |a| {
            a.default_value(O::DEFAULT_MAX_STREAMS).required(false)
        })
}

/// What the command line said, by key.
struct Flags {
    /// Key -> long flag name, for every argument.
    longs: BTreeMap<String, String>,
    /// Keys given on the command line or through their environment
    /// variable: these win over the file.
    given: BTreeMap<String, Origin>,
    /// Hidden flags (benchmark switches): never from the file.
    hidden: BTreeSet<String>,
}

impl Flags {
    fn new(command: &Command, matches: &ArgMatches) -> Self {
        let mut longs = BTreeMap::new();
        let mut given = BTreeMap::new();
        let mut hidden = BTreeSet::new();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str().to_owned();
            if arg.is_hide_set() {
                hidden.insert(id.clone());
            }
            let long = arg
                .get_long()
                .map_or_else(|| id.clone(), |l| format!("--{l}"));
            match matches.value_source(&id) {
                Some(ValueSource::CommandLine) => {
                    given.insert(id.clone(), Origin::Flag(long.clone()));
                }
                Some(ValueSource::EnvVariable) => {
                    let env = arg
                        .get_env()
                        .map_or_else(|| long.clone(), |e| e.to_string_lossy().into_owned());
                    given.insert(id.clone(), Origin::Env(env));
                }
                _ => {}
            }
            longs.insert(id, long);
        }
        Self {
            longs,
            given,
            hidden,
        }
    }

    /// A table of the tree whose keys are flags (`[security]`, `[policy]`)
    /// is merged key by key; any other table (`[labels]`) is one value.
    fn is_section(&self, value: &Value) -> bool {
        value
            .as_object()
            .is_some_and(|t| t.keys().any(|k| self.longs.contains_key(k)))
    }

    fn record_defaults(&self, tree: &Map<String, Value>, prefix: &str, origins: &mut Origins) {
        for (key, value) in tree {
            let dotted = format!("{prefix}{key}");
            if self.is_section(value) {
                if let Some(table) = value.as_object() {
                    self.record_defaults(table, &format!("{dotted}."), origins);
                }
                continue;
            }
            let origin = self.given.get(key).cloned().unwrap_or_else(|| {
                Origin::Default(self.longs.get(key).cloned().unwrap_or(dotted.clone()))
            });
            origins.by_key.insert(dotted, origin);
        }
    }
}

/// Lays the file's keys over `tree`, except where a flag was given.
fn merge_file(
    file: Map<String, Value>,
    tree: &mut Map<String, Value>,
    prefix: &str,
    path: &Path,
    flags: &Flags,
    origins: &mut Origins,
) -> Result<(), Error> {
    for (key, value) in file {
        let dotted = format!("{prefix}{key}");
        let slot = match tree.get_mut(&key) {
            Some(slot) if !flags.hidden.contains(&key) => slot,
            _ => {
                let mut known: Vec<&String> =
                    tree.keys().filter(|k| !flags.hidden.contains(*k)).collect();
                known.sort();
                let known: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                return Err(Error::ConfigInvalid {
                    path: path.to_owned(),
                    message: format!(
                        "unknown key `{dotted}`; expected one of {}",
                        known.join(", ")
                    ),
                });
            }
        };
        if flags.is_section(slot) {
            let (Some(table), Value::Object(file_table)) = (slot.as_object_mut(), value) else {
                return Err(Error::ConfigInvalid {
                    path: path.to_owned(),
                    message: format!("`{dotted}` must be a table ([{dotted}])"),
                });
            };
            merge_file(
                file_table,
                table,
                &format!("{dotted}."),
                path,
                flags,
                origins,
            )?;
            continue;
        }
        if flags.given.contains_key(&key) {
            continue;
        }
        *slot = value;
        origins.by_key.insert(
            dotted.clone(),
            Origin::File {
                path: path.to_owned(),
                key: dotted,
            },
        );
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Map<String, Value>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
        path: path.to_owned(),
        source,
    })?;
    parse_file(path, &text)
}

/// The file as a tree. TOML's own errors name the line and column.
fn parse_file(path: &Path, text: &str) -> Result<Map<String, Value>, Error> {
    let invalid = |message: String| Error::ConfigInvalid {
        path: path.to_owned(),
        message,
    };
    let table: toml::Table =
        toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
    match serde_json::to_value(table) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid("not a table of keys".to_owned())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

fn to_object<T: Serialize>(value: &T) -> Result<Map<String, Value>, Error> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::Options(
            "options must serialize as a table".to_owned(),
        )),
        Err(e) => Err(Error::Options(e.to_string())),
    }
}

/// Deserializes a merged tree; an error names where the bad value came
/// from.
fn from_tree<T: DeserializeOwned>(tree: Map<String, Value>, origins: &Origins) -> Result<T, Error> {
    serde_path_to_error::deserialize(Value::Object(tree)).map_err(|e| {
        let key = e.path().to_string();
        Error::Options(origins.error(&key, e.inner()))
    })
}

#[cfg(test)]
mod tests;
