//! The stand-in Linky meter as a process (`tic-standin`, package
//! delestage-tic-standin), for the end-to-end tests: its pty appears at
//! `dir/linky`, for `relay-service --meter`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::{BOUND, binary};

/// A running `tic-standin`. Killed on drop.
pub struct TicStandinProcess {
    pub link: PathBuf,
    stdin: ChildStdin,
    _child: Child,
}

impl TicStandinProcess {
    /// Starts it with its pty at `dir/linky` and `args` (see
    /// `tic-standin --help`); returns once it says the meter is there.
    pub async fn start(dir: &Path, args: &[&str]) -> Self {
        std::fs::create_dir_all(dir).expect("the meter's dir");
        let link = dir.join("linky");
        let mut child = Command::new(binary("tic-standin"))
            .arg("--link")
            .arg(&link)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start tic-standin");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("tic-standin says where the meter is")
            .expect("read its output");
        assert!(
            first.as_deref().is_some_and(|l| l.contains("meter on")),
            "tic-standin said {first:?}"
        );
        // The rest of its output (each command echoed) is not needed.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let stdin = child.stdin.take().expect("stdin piped");
        Self {
            link,
            stdin,
            _child: child,
        }
    }

    /// Sends one command (`tomorrow red`, `unplug`, ...).
    pub async fn command(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write a command to tic-standin");
    }

    pub fn link_str(&self) -> &str {
        self.link.to_str().expect("utf-8 path")
    }
}
