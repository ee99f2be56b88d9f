//! The `rapport` binary as a running daemon for tests: started with its own systemd
//! notification socket (a Unix datagram socket the test binds in a temp dir), signalled by PID,
//! its stderr (the log) kept in a file.
#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous bounds on waits that check behaviour, not speed.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The socket systemd would listen on for `sd_notify` messages, read all the time by a thread
/// of its own (as systemd does: a socket nobody reads fills up and blocks the sender).
pub struct NotifySocket {
    pub path: PathBuf,
    received: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        // Ends with the process (the socket file goes with the temp dir).
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        NotifySocket {
            path,
            received,
            _dir: dir,
        }
    }

    /// Every message received so far, in order (`READY=1\nSTATUS=...`).
    pub fn messages(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Waits for a message with a line equal to `line` (e.g. `READY=1`) after the first
    /// `after` messages; returns its index. Panics after [`PATIENCE`].
    pub fn wait_for(&self, line: &str, after: usize) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(i) = self
                .messages()
                .iter()
                .enumerate()
                .skip(after)
                .find(|(_, m)| m.lines().any(|l| l == line))
                .map(|(i, _)| i)
            {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no {line} from the daemon; got {:?}",
                self.messages()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn has(&self, line: &str) -> bool {
        self.messages().iter().any(|m| m.lines().any(|l| l == line))
    }
}

/// A running `rapport run`.
pub struct Daemon {
    child: Option<Child>,
    pub log_path: PathBuf,
    pub stdout_path: PathBuf,
}

impl Daemon {
    /// Starts `rapport --config CONFIG run ARGS` with `env`, logging to `log_dir`.
    pub fn start(config: &Path, args: &[&str], env: &[(&str, &str)], log_dir: &Path) -> Daemon {
        let n = std::fs::read_dir(log_dir).map(|d| d.count()).unwrap_or(0);
        let log_path = log_dir.join(format!("daemon-{n}.stderr"));
        let stdout_path = log_dir.join(format!("daemon-{n}.stdout"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rapport"));
        cmd.arg("--config")
            .arg(config)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env("RAPPORT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&log_path).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start rapport");
        Daemon {
            child: Some(child),
            log_path,
            stdout_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal (`TERM`, `HUP`, `INT`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill (procps)");
        assert!(st.success(), "kill -{sig} failed");
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// Waits for the process to exit; panics after [`PATIENCE`].
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                self.child = None;
                return st;
            }
            assert!(Instant::now() < deadline, "rapport did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Waits until the log contains `text`; panics after [`PATIENCE`].
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log().contains(text) {
            assert!(Instant::now() < deadline, "no `{text}` in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
