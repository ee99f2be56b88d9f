//! A real SMTP server for sequence tests: aiosmtpd (Debian `python3-aiosmtpd`) running
//! tests/support/smtp_sink.py on a free loopback port, storing every accepted message as a
//! file. Stopped (by PID) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The system Python, which is where Debian installs aiosmtpd.
const PYTHON: &str = "/usr/bin/python3";

pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub envelope_to: Vec<String>,
    /// The message as received (without the envelope line).
    pub raw: String,
}

impl Received {
    /// The first header field of that name (unfolded), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or_default();
        let mut out: Option<String> = None;
        for line in head.split("\r\n") {
            let continuation = line.starts_with(' ') || line.starts_with('\t');
            match (&mut out, continuation) {
                (Some(o), true) => {
                    o.push(' ');
                    o.push_str(line.trim());
                }
                (Some(_), false) => break,
                (None, _) => {
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case(name)
                    {
                        out = Some(v.trim().to_owned());
                    }
                }
            }
        }
        out
    }

    pub fn message_id(&self) -> String {
        self.header("Message-ID")
            .unwrap_or_default()
            .trim_matches(['<', '>'])
            .to_owned()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpSink {
    /// Starts the server. `args`: extra options (`--reject5 SUBSTR`, `--tempfail4 SUBSTR`,
    /// `--copy-to MAILDIR_FOLDER`). Panics with what to install when aiosmtpd is missing.
    pub fn start(args: &[&str]) -> SmtpSink {
        let check = Command::new(PYTHON).args(["-c", "import aiosmtpd"]).output();
        if !check.as_ref().is_ok_and(|o| o.status.success()) {
            panic!(
                "the SMTP test server needs aiosmtpd for {PYTHON}: apt-get install python3-aiosmtpd \
                 (scripts/test installs it)"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(PYTHON)
                .arg(&script)
                .args(["--port", &port.to_string(), "--dir"])
                .arg(dir.path())
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the SMTP test server");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if dir.path().join("ready").exists() {
                    return SmtpSink { child, port, dir };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let out = child
                .wait_with_output()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
            eprintln!("SMTP test server did not start on port {port}: {out:?}");
        }
        panic!("the SMTP test server (aiosmtpd) would not start");
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Every accepted message, in the order they were accepted.
    pub fn messages(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                let (env, raw) = text.split_once("\r\n").unwrap_or_default();
                let to = env.split(" -> ").nth(1).unwrap_or_default();
                Received {
                    envelope_to: to.split(',').map(str::to_owned).collect(),
                    raw: raw.to_owned(),
                }
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
