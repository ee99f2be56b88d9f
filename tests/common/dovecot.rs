//! A real Dovecot IMAP server per test: `Dovecot::start(&[("alice", "secret")])` writes a config
//! into a fresh temp dir, runs `/usr/sbin/dovecot -F` on a free 127.0.0.1 port and returns once
//! the server greets. Plaintext IMAP, no TLS; a passwd-file with the given users; mail in Maildir
//! (Maildir++ layout, hierarchy separator `/`) owned by the system user `rapport-mail`, which
//! `scripts/test` creates (Dovecot refuses to access mail as root). `INBOX`, `Sent` (`\Sent`),
//! `Drafts`, `Trash` and `Junk` exist and are subscribed; CONDSTORE, QRESYNC, SPECIAL-USE,
//! UIDPLUS and IDLE are advertised. Dropping the value kills every process of the instance.
//!
//! The log (`log_path()`) has one `Debug: Command finished: <command>` line per IMAP command a
//! logged-in session ran (see `imap_commands` and `count_commands`) and, from the `mail_log`
//! plugin, one `Info:` line per change a session made to a mailbox (`save`, `flag_change`,
//! `expunge`, ...), e.g. `flag_change: box=INBOX, uid=2, msgid=, flags=(\Seen)` when a client
//! fetched `BODY[]` instead of `BODY.PEEK[]`.
//!
//! `Dovecot::start_tls` starts the same server with TLS: a throwaway CA and a server certificate
//! it signed (subjectAltName `IP:127.0.0.1, DNS:localhost`, made with the `openssl` tool) are
//! written into the temp dir (`ca_cert_path()` is the CA, PEM, for the client's `ca_file`);
//! `port()` serves STARTTLS (`disable_plaintext_auth = yes`), `tls_port()` serves implicit TLS.
//! Dovecot allows plaintext logins anyway on connections it considers local (client address =
//! server address, so everything to 127.0.0.1); the plain port therefore also listens on
//! `NON_LOCAL_HOST` (127.0.0.2), where logins are refused before STARTTLS (`LOGINDISABLED`).
//! `ImapSetup` speaks plaintext only: fill such a server with `write_maildir_messages`, which
//! needs no login.
//!
//! Written for Dovecot 2.3 (Debian 12); 2.4 changed the configuration language, and `start`
//! says so instead of failing obscurely. Must run as root, like `scripts/test`.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

pub const DOVECOT_BIN: &str = "/usr/sbin/dovecot";
pub const DOVEADM_BIN: &str = "/usr/bin/doveadm";
/// The unprivileged user the test servers store mail as.
pub const MAIL_USER: &str = "rapport-mail";
pub const HOST: &str = "127.0.0.1";
/// A `start_tls` instance's plain port also listens here. Dovecot counts a connection whose
/// client and server addresses are equal (any connection to 127.0.0.1) as secured and allows
/// plaintext logins on it whatever `disable_plaintext_auth` or `ssl = required` say; a client
/// connecting to 127.0.0.2 comes from 127.0.0.1, so there logins need STARTTLS first.
pub const NON_LOCAL_HOST: &str = "127.0.0.2";
/// The IMAP hierarchy separator of the test servers (`Archive/2026`).
pub const SEPARATOR: char = '/';

const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One running (or stopped, between `stop` and `restart`) Dovecot instance and its temp dir.
pub struct Dovecot {
    master: Option<Child>,
    port: u16,
    /// The implicit-TLS port of a `start_tls` instance (which also has STARTTLS on `port`).
    tls_port: Option<u16>,
    /// `instance_name` in the config: every child process's title starts with
    /// `dovecot-<instance>/`, which finds them even after the master is gone.
    instance: String,
    uid: u32,
    gid: u32,
    /// With `start_oauth`: the URL Dovecot's oauth2 passdb checks bearer tokens against.
    introspection_url: Option<String>,
    // Last, so that it is deleted after the processes are gone.
    dir: tempfile::TempDir,
}

impl Dovecot {
    /// Starts a server that knows `users` as (name, password). Panics, saying what to do, when
    /// Dovecot or the `rapport-mail` user is missing or the server does not come up.
    pub fn start(users: &[(&str, &str)]) -> Dovecot {
        Dovecot::start_with(users, false)
    }

    /// Like `start`, with TLS: STARTTLS on `port()` (logins only after it), implicit TLS on
    /// `tls_port()`, a certificate for `127.0.0.1` and `localhost` signed by the throwaway CA at
    /// `ca_cert_path()`. Panics, saying what to install, when `openssl` is missing.
    pub fn start_tls(users: &[(&str, &str)]) -> Dovecot {
        Dovecot::start_with(users, true)
    }

    /// Like `start`, and XOAUTH2 (and OAUTHBEARER) logins too: Dovecot's oauth2 passdb POSTs
    /// each bearer token to `introspection_url` (RFC 7662) and lets the user in when the answer
    /// is `{"active": true, "username": "<user>"}`. Passwords still work for PLAIN/LOGIN.
    pub fn start_oauth(users: &[(&str, &str)], introspection_url: &str) -> Dovecot {
        Dovecot::start_full(users, false, Some(introspection_url.to_owned()))
    }

    fn start_with(users: &[(&str, &str)], tls: bool) -> Dovecot {
        Dovecot::start_full(users, tls, None)
    }

    fn start_full(users: &[(&str, &str)], tls: bool, introspection_url: Option<String>) -> Dovecot {
        let (uid, gid) = preflight();
        // In /tmp, not $TMPDIR: the unprivileged Dovecot processes must be able to reach the
        // dir, and Unix socket paths under it must stay short.
        let dir = tempfile::Builder::new()
            .prefix("rapport-dovecot.")
            .tempdir_in("/tmp")
            .expect("create a temp dir for Dovecot");
        let root = dir.path();
        assert!(
            !root.to_string_lossy().contains(char::is_whitespace),
            "temp dir path has whitespace: {}",
            root.display()
        );
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        for sub in ["run", "state"] {
            fs::create_dir(root.join(sub)).expect("create Dovecot dir");
        }
        let home = root.join("home");
        fs::create_dir(&home).expect("create home dir");
        chown(&home, Some(uid), Some(gid)).expect("chown home dir");
        let mut passwd = String::new();
        for (user, pass) in users {
            assert!(
                !user.is_empty()
                    && *user != "."
                    && *user != ".."
                    && !user.contains(|c: char| c == ':' || c == '/' || c.is_whitespace() || c.is_control()),
                "test Dovecot: unusable user name {user:?}"
            );
            assert!(
                !pass.contains(|c: char| c == ':' || c.is_control()),
                "test Dovecot: passwords must not contain ':' or control characters: {pass:?}"
            );
            passwd.push_str(&format!("{user}:{{PLAIN}}{pass}\n"));
        }
        fs::write(root.join("users"), passwd).expect("write passwd-file");
        fs::set_permissions(root.join("users"), fs::Permissions::from_mode(0o644)).expect("chmod passwd-file");

        if tls {
            make_certificates(&root.join("tls"));
        }

        let mut dovecot = Dovecot {
            master: None,
            port: 0,
            tls_port: None,
            instance: format!("rapport-{}-{:08x}", std::process::id(), fastrand::u32(..)),
            uid,
            gid,
            introspection_url,
            dir,
        };
        // The free port can be taken by someone else before Dovecot binds it: try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            dovecot.port = free_port();
            if tls {
                dovecot.tls_port = Some(loop {
                    let p = free_port();
                    if p != dovecot.port {
                        break p;
                    }
                });
            }
            match dovecot.spawn() {
                Ok(()) => return dovecot,
                Err(e) if e.contains("Address already in use") => last_error = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last_error}")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS (imaps) port. Panics unless the instance was made by `start_tls`.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
            .expect("this Dovecot has no TLS port: start it with Dovecot::start_tls")
    }

    /// The throwaway CA (PEM) that signed the server certificate, for a client's `ca_file`.
    /// Panics unless the instance was made by `start_tls`.
    pub fn ca_cert_path(&self) -> PathBuf {
        assert!(
            self.tls_port.is_some(),
            "this Dovecot has no certificate: start it with Dovecot::start_tls"
        );
        self.tls_dir().join("ca.pem")
    }

    fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    pub fn host(&self) -> &str {
        HOST
    }

    /// The temp dir holding config, passwd-file, logs, runtime files and mail.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Dovecot's log: master, login, IMAP sessions (commands, mail changes).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.log")
    }

    /// The whole log so far (after letting pending lines arrive, see `imap_commands`).
    pub fn log(&self) -> String {
        self.settle_log();
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The user's Maildir root (INBOX); other folders are `.Name` under it (Maildir++).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("home").join(user).join("Maildir")
    }

    /// The master process's PID while running.
    pub fn master_pid(&self) -> Option<u32> {
        self.master.as_ref().map(Child::id)
    }

    /// Every live process of this instance: the master and all its workers.
    pub fn pids(&self) -> Vec<u32> {
        let master = self.master_pid();
        let mut pids: Vec<u32> = self.instance_processes().iter().map(|p| p.pid).collect();
        pids.extend(master);
        pids
    }

    /// Stops the server: the master and the IMAP sessions get SIGTERM (sessions say
    /// `* BYE Server shutting down.`), whatever is left after that is killed. Waits until no
    /// process of the instance is left. Mail and indexes stay for `restart`.
    pub fn stop(&mut self) {
        if let Err(e) = self.shutdown(true) {
            panic!("{e}");
        }
    }

    /// Stops the server and starts it again on the same port with the same users and mail.
    /// Open connections are closed by the stop.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("restarting Dovecot: {e}");
        }
    }

    /// Kills (SIGKILL) the IMAP session processes of this instance, and only those: a crash in
    /// the middle of whatever the clients were doing; they see the connection drop without a
    /// BYE. The server goes on accepting new logins. Returns how many were killed.
    pub fn kill_imap_processes(&self) -> usize {
        let master = self.master_pid().expect("kill_imap_processes: Dovecot is not running");
        let victims: Vec<u32> = processes()
            .into_iter()
            .filter(|p| p.ppid == master && p.comm == "imap")
            .map(|p| p.pid)
            .collect();
        signal("KILL", &victims);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while victims.iter().any(|&pid| is_alive(pid)) {
            assert!(Instant::now() < deadline, "imap processes {victims:?} did not die");
            std::thread::sleep(Duration::from_millis(10));
        }
        victims.len()
    }

    /// Writes messages straight into the user's Maildir, the fast way to fill a mailbox for
    /// benchmarks: `folder` None (or "INBOX") is INBOX, `Some("Sent")` is `.Sent`,
    /// `Some("Archive/2026")` is `.Archive.2026`; missing folders are created (unsubscribed unless
    /// Dovecot auto-subscribes them). Each message becomes a file in `cur/` without flags (unseen),
    /// written in `tmp/` first and renamed, owned by `rapport-mail`; its INTERNALDATE is the time
    /// of writing. Works whether or not the server runs or a session has the folder open.
    /// Dovecot finds new files by itself on the next sync (SELECT, STATUS, NOOP, IDLE): no
    /// `dovecot-uidlist` reset is needed; they get the next UIDs, in the order of the iterator
    /// (the names sort in writing order, which is how Dovecot numbers new files). Returns how
    /// many were written.
    pub fn write_maildir_messages<I>(&self, user: &str, folder: Option<&str>, messages: I) -> usize
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let folder_dir = self.ensure_folder_dir(user, folder);
        let tmp = folder_dir.join("tmp");
        let cur = folder_dir.join("cur");
        let pid = std::process::id();
        let mut n = 0;
        for message in messages {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            // Dovecot sorts new files by the time before the first dot, then by the
            // microseconds after `M`, then by name: all three grow with `seq`. The varying
            // digits come last and the name's length never changes: Dovecot keeps the names in
            // a hash table whose hash (PJW's, one character per 4 bits, the high bits folded
            // back) keeps little of a name's beginning. Named `…P<pid>Q<seq>.rapport-test`, the
            // 50,000 messages of the benchmark got 5 distinct hashes whenever the pid had four
            // digits: every lookup then compared names one by one, and Dovecot served 5,000
            // instead of 140,000 messages a second (the "slow state" of older BENCHMARKS.md
            // runs, which came and went with the pid).
            let base = format!(
                "{}.M{:06}P{pid:07}.rapport-test-{seq:012}",
                1_700_000_000 + seq / 1_000_000,
                seq % 1_000_000
            );
            let tmp_path = tmp.join(&base);
            let write = |path: &Path| -> std::io::Result<()> {
                let mut file = fs::File::create(path)?;
                file.write_all(&message)?;
                // The time of writing by this process's clock, set explicitly: the kernel's own
                // file times ignore a clock moved by `scripts/test-ahead`.
                file.set_modified(SystemTime::now())
            };
            write(&tmp_path).unwrap_or_else(|e| panic!("write {}: {e}", tmp_path.display()));
            chown(&tmp_path, Some(self.uid), Some(self.gid)).expect("chown message file");
            fs::set_permissions(&tmp_path, fs::Permissions::from_mode(0o600)).expect("chmod message file");
            fs::rename(&tmp_path, cur.join(format!("{base}:2,"))).expect("move message file into cur/");
            n += 1;
        }
        n
    }

    /// Gives a folder a new UIDVALIDITY (the old one plus 1) with `doveadm mailbox update`
    /// while the server runs; messages and their UIDs stay. Returns the new UIDVALIDITY. A
    /// session that has the folder selected is disconnected by Dovecot at its next command
    /// (`* BYE IMAP session state is inconsistent, please relogin.`), as a real server would do.
    pub fn bump_uidvalidity(&self, user: &str, folder: &str) -> u32 {
        let old = self.doveadm_uidvalidity(user, folder);
        let new = if old == u32::MAX { 1 } else { old + 1 };
        self.doveadm(&[
            "mailbox",
            "update",
            "-u",
            user,
            "--uid-validity",
            &new.to_string(),
            folder,
        ]);
        let now = self.doveadm_uidvalidity(user, folder);
        assert_eq!(now, new, "doveadm did not change the UIDVALIDITY of {user}'s {folder}");
        new
    }

    /// Runs `doveadm` against this instance (as root, with its config), e.g.
    /// `["flags", "add", "-u", "alice", "\\Seen", "mailbox", "INBOX", "uid", "3"]`.
    /// Returns stdout; panics with stderr when it fails. The server must be running.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new(DOVEADM_BIN)
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {DOVEADM_BIN}: {e}"));
        assert!(
            out.status.success(),
            "doveadm {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The IMAP commands logged-in sessions finished, in log order (LOGIN/AUTHENTICATE happen
    /// before the session exists and are not listed). The log is written by a separate Dovecot
    /// process a moment after the client has its answer, so this first waits until the log file
    /// stops growing (100 ms, at most 2 s).
    pub fn imap_commands(&self) -> Vec<LoggedCommand> {
        self.log().lines().filter_map(LoggedCommand::parse).collect()
    }

    /// How many commands named `name` (case-insensitive; "FETCH" counts `FETCH` and `UID FETCH`)
    /// the user's sessions ran.
    pub fn count_commands(&self, user: &str, name: &str) -> usize {
        self.imap_commands()
            .iter()
            .filter(|c| c.user == user && c.name.eq_ignore_ascii_case(name))
            .count()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    fn doveadm_uidvalidity(&self, user: &str, folder: &str) -> u32 {
        let out = self.doveadm(&["-f", "flow", "mailbox", "status", "-u", user, "uidvalidity", folder]);
        out.split_whitespace()
            .find_map(|w| w.strip_prefix("uidvalidity="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no uidvalidity in doveadm output {out:?}"))
    }

    /// Creates the folder's Maildir (and the user's home and INBOX) if missing.
    fn ensure_folder_dir(&self, user: &str, folder: Option<&str>) -> PathBuf {
        let home = self.dir.path().join("home").join(user);
        let root = self.maildir(user);
        let folder = folder.filter(|f| !f.eq_ignore_ascii_case("INBOX"));
        let mut dirs = vec![home, root.clone(), root.join("cur"), root.join("new"), root.join("tmp")];
        let folder_dir = match folder {
            None => root.clone(),
            Some(name) => {
                assert!(
                    !name.is_empty() && !name.contains('.') && !name.starts_with(SEPARATOR),
                    "unusable folder name {name:?} (no dots in Maildir++)"
                );
                let d = root.join(format!(".{}", mutf7_encode(name).replace(SEPARATOR, ".")));
                dirs.extend([d.clone(), d.join("cur"), d.join("new"), d.join("tmp")]);
                d
            }
        };
        for d in &dirs {
            if !d.exists() {
                fs::create_dir(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
                fs::set_permissions(d, fs::Permissions::from_mode(0o700)).expect("chmod Maildir dir");
                chown(d, Some(self.uid), Some(self.gid)).expect("chown Maildir dir");
            }
        }
        if folder.is_some() {
            let marker = folder_dir.join("maildirfolder");
            if !marker.exists() {
                fs::write(&marker, b"").expect("write maildirfolder");
                chown(&marker, Some(self.uid), Some(self.gid)).expect("chown maildirfolder");
            }
        }
        folder_dir
    }

    fn write_config(&self) {
        let root = self.dir.path().to_str().expect("UTF-8 temp dir path");
        let (ssl_settings, imaps_listener) = match self.tls_port {
            None => (
                "ssl = no\ndisable_plaintext_auth = no".to_string(),
                "  inet_listener imaps {\n    port = 0\n  }".to_string(),
            ),
            Some(tls_port) => (
                format!(
                    "ssl = yes\nssl_cert = <{root}/tls/server.pem\nssl_key = <{root}/tls/server.key\n\
                     disable_plaintext_auth = yes"
                ),
                format!(
                    "  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {tls_port}\n    ssl = yes\n  }}"
                ),
            ),
        };
        let config = CONFIG_TEMPLATE
            .replace("@DIR@", root)
            .replace("@INSTANCE@", &self.instance)
            .replace("@PORT@", &self.port.to_string())
            .replace(
                "@ADDRESSES@",
                if self.tls_port.is_some() {
                    "127.0.0.1 127.0.0.2"
                } else {
                    "127.0.0.1"
                },
            )
            .replace("@SSL@", &ssl_settings)
            .replace("@IMAPS@", &imaps_listener)
            .replace("@UID@", &self.uid.to_string())
            .replace("@GID@", &self.gid.to_string());
        let (mechs, passwd_mechs, oauth_passdb) = match &self.introspection_url {
            None => (String::new(), String::new(), String::new()),
            Some(url) => {
                let args = format!("{root}/dovecot-oauth2.conf.ext");
                fs::write(
                    &args,
                    format!(
                        "introspection_mode = post\nintrospection_url = {url}\nforce_introspection = yes\n\
                         username_attribute = username\nactive_attribute = active\nactive_value = true\n"
                    ),
                )
                .expect("write dovecot-oauth2.conf.ext");
                (
                    " xoauth2 oauthbearer".to_string(),
                    "  mechanisms = plain login\n".to_string(),
                    format!("passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {args}\n}}\n"),
                )
            }
        };
        let config = config
            .replace("@MECHS@", &mechs)
            .replace("@PASSWD_MECHS@", &passwd_mechs)
            .replace("@OAUTH_PASSDB@", &oauth_passdb);
        fs::write(self.config_path(), config).expect("write dovecot.conf");
    }

    /// Starts the master on `self.port` and waits until it greets.
    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.master.is_none(), "Dovecot is already running");
        self.write_config();
        let root = self.dir.path();
        let stderr_path = root.join("dovecot.stderr");
        let stderr = fs::File::create(&stderr_path).expect("create dovecot.stderr");
        let child = Command::new(DOVECOT_BIN)
            .arg("-F")
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("dup stderr file"))
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("run {DOVECOT_BIN}: {e}"));
        self.master = Some(child);
        // Dovecot delays logins from an IP after failed ones (2 s, doubling up to 15 s), which
        // would slow every wrong-password test and all logins after it. The auth process skips
        // that when it cannot find this socket, so it goes before anything connects (the first
        // connection starts the auth process). `mode = 0` on the listener instead makes auth
        // log an error at every start.
        let penalty_socket = root.join("run").join("anvil-auth-penalty");
        let deadline = Instant::now() + START_TIMEOUT;
        let addr: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, self.port).into();
        let mut penalty_removed = false;
        loop {
            let exited = self.master.as_mut().and_then(|m| m.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.master = None;
                let _ = self.shutdown(false);
                return Err(format!(
                    "Dovecot exited at start ({status}) on port {}:\n{}{}",
                    self.port,
                    fs::read_to_string(&stderr_path).unwrap_or_default(),
                    fs::read_to_string(self.log_path()).unwrap_or_default()
                ));
            }
            if !penalty_removed {
                penalty_removed = fs::remove_file(&penalty_socket).is_ok();
            }
            // The master binds every listener before it starts any: once the plain port
            // greets, the TLS port accepts too (checked anyway, it is cheap).
            let tls_listening = self.tls_port.is_none_or(|p| {
                TcpStream::connect_timeout(&(std::net::Ipv4Addr::LOCALHOST, p).into(), Duration::from_millis(200))
                    .is_ok()
            });
            if penalty_removed && greets(addr) && tls_listening {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.shutdown(false);
                return Err(format!(
                    "Dovecot did not greet on port {} within {START_TIMEOUT:?}:\n{}",
                    self.port,
                    fs::read_to_string(self.log_path()).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the master and makes sure no process of the instance is left. `graceful`: SIGTERM
    /// first (the master does not stop IMAP sessions by itself, so they get it too); otherwise
    /// SIGKILL at once.
    fn shutdown(&mut self, graceful: bool) -> Result<(), String> {
        if let Some(mut master) = self.master.take() {
            let master_pid = master.id();
            let sessions: Vec<u32> = processes()
                .into_iter()
                .filter(|p| p.ppid == master_pid && p.comm == "imap")
                .map(|p| p.pid)
                .collect();
            if graceful {
                signal("TERM", &[master_pid]);
                signal("TERM", &sessions);
                let deadline = Instant::now() + STOP_TIMEOUT;
                while master.try_wait().map_err(|e| e.to_string())?.is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            } else {
                let mut all: Vec<u32> = self.instance_processes().iter().map(|p| p.pid).collect();
                all.push(master_pid);
                signal("KILL", &all);
            }
            let _ = master.kill();
            master.wait().map_err(|e| format!("wait for the Dovecot master: {e}"))?;
        }
        // What is left has been reparented: find it by its title.
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let left: Vec<u32> = self.instance_processes().iter().map(|p| p.pid).collect();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("Dovecot processes {left:?} did not die"));
            }
            signal("KILL", &left);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The live processes of this instance other than the master (whose title is its command).
    fn instance_processes(&self) -> Vec<Proc> {
        let master = self.master_pid();
        let prefix = format!("dovecot-{}/", self.instance);
        processes()
            .into_iter()
            .filter(|p| Some(p.pid) != master && (Some(p.ppid) == master || p.cmdline.starts_with(&prefix)))
            .collect()
    }

    fn settle_log(&self) {
        let path = self.log_path();
        let len = || fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = len();
        let mut stable_since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let now = len();
            if now != last {
                last = now;
                stable_since = Instant::now();
            } else if stable_since.elapsed() >= Duration::from_millis(100) {
                return;
            }
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = fs::read_to_string(self.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- last lines of the test Dovecot's log ({}):\n{}",
                self.log_path().display(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        if let Err(e) = self.shutdown(false) {
            eprintln!("stopping the test Dovecot: {e}");
        }
    }
}

/// One `Command finished` line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedCommand {
    pub user: String,
    /// PID of the session's `imap` process.
    pub pid: u32,
    /// `UID FETCH` rather than `FETCH`.
    pub uid: bool,
    /// Upper case, without `UID`: `FETCH`, `SELECT`, `IDLE`...
    pub name: String,
    /// The rest of the command as logged (literals shown as `<n byte literal>`).
    pub args: String,
}

impl LoggedCommand {
    /// `Nov 28 10:35:53 imap(alice)<9499><65S+vVNhGL9/AAAB>: Debug: Command finished: UID FETCH 2 (BODY[])`
    fn parse(line: &str) -> Option<LoggedCommand> {
        const MARK: &str = ": Debug: Command finished: ";
        let at = line.find(MARK)?;
        let (head, command) = (&line[..at], &line[at + MARK.len()..]);
        let start = head.find(" imap(")? + " imap(".len();
        let close = head.rfind(")<")?;
        let user = head.get(start..close)?.to_string();
        let pid = head[close + 2..].split('>').next()?.parse().ok()?;
        let (first, rest) = command.split_once(' ').unwrap_or((command, ""));
        let (uid, name, args) = if first.eq_ignore_ascii_case("UID") {
            let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
            (true, name, args)
        } else {
            (false, first, rest)
        };
        Some(LoggedCommand {
            user,
            pid,
            uid,
            name: name.to_ascii_uppercase(),
            args: args.trim_end().to_string(),
        })
    }
}

const CONFIG_TEMPLATE: &str = r#"# One test's Dovecot, written by tests/common/dovecot.rs (Dovecot 2.3 syntax).
instance_name = @INSTANCE@
base_dir = @DIR@/run
state_dir = @DIR@/state
protocols = imap
listen = 127.0.0.1
# Dovecot's defaults, and what `scripts/test-ahead` sets to move every clock but the kernel's.
import_environment = TZ CORE_OUTOFMEM CORE_ERROR LISTEN_PID LISTEN_FDS LD_PRELOAD FAKETIME FAKETIME_DONT_FAKE_MONOTONIC NO_FAKE_STAT
@SSL@
auth_mechanisms = plain login@MECHS@
auth_failure_delay = 0
log_path = @DIR@/dovecot.log
info_log_path = @DIR@/dovecot.log
debug_log_path = @DIR@/dovecot.log
mail_debug = no
# One "Debug: Command finished: UID FETCH ..." line per command of a logged-in session.
log_debug = event=imap_command_finished
# The default 256M kills imap on large Maildirs.
default_vsz_limit = 2G
mail_max_userip_connections = 1000
mail_location = maildir:~/Maildir
first_valid_uid = @UID@
last_valid_uid = @UID@
first_valid_gid = @GID@
last_valid_gid = @GID@
mail_plugins = $mail_plugins notify mail_log

passdb {
  driver = passwd-file
  args = scheme=PLAIN @DIR@/users
@PASSWD_MECHS@}
@OAUTH_PASSDB@userdb {
  driver = static
  args = uid=@UID@ gid=@GID@ home=@DIR@/home/%u
}

service imap-login {
  inet_listener imap {
    address = @ADDRESSES@
    port = @PORT@
  }
@IMAPS@
}
# The sessions run as rapport-mail, outside the dovecot group the stats sockets are limited to.
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}

namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \Junk
    auto = subscribe
  }
}

plugin {
  mail_log_events = delete undelete expunge copy mailbox_delete mailbox_rename flag_change save mailbox_create
  mail_log_fields = uid box msgid flags
}
"#;

/// Checks what the server needs and returns the uid and gid of `rapport-mail`.
fn preflight() -> (u32, u32) {
    if !Path::new(DOVECOT_BIN).exists() {
        panic!("Dovecot is not installed: run scripts/test, or apt-get install dovecot-imapd");
    }
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    if euid.as_deref() != Some("0") {
        panic!(
            "the test Dovecot must be started as root (as scripts/test runs), to run its mail processes as {MAIL_USER}"
        );
    }
    let version = Command::new(DOVECOT_BIN)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !version.starts_with("2.3.") {
        panic!("the test Dovecot config is written for Dovecot 2.3, but {DOVECOT_BIN} is {version:?}");
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == MAIL_USER).then(|| (fields[2].parse().ok(), fields[3].parse().ok()))
    });
    match ids {
        Some((Some(uid), Some(gid))) => (uid, gid),
        _ => panic!(
            "the system user {MAIL_USER}, which the test Dovecot stores mail as, is missing: run scripts/test \
             (as root), or: useradd --system --user-group --no-create-home --shell /usr/sbin/nologin {MAIL_USER}"
        ),
    }
}

/// Writes a throwaway CA (`ca.pem`, `ca.key`) and a server certificate it signed (`server.pem`,
/// `server.key`: P-256, SHA-256, valid for 3 days, subjectAltName `IP:127.0.0.1, DNS:localhost`)
/// into `dir`. Two certificates, because webpki (rustls) accepts neither a self-signed leaf as its
/// own root nor a certificate without subjectAltName. Also used by the SMTP test server.
pub fn make_certificates(dir: &Path) {
    fs::create_dir(dir).expect("create the TLS dir");
    let path = |name: &str| dir.join(name).to_str().expect("UTF-8 temp dir path").to_string();
    fs::write(
        dir.join("server.ext"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    .expect("write server.ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-sha256",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "3", "-subj", "/CN=Rapport test CA"],
            &["-addext", "basicConstraints = critical, CA:TRUE"],
            &["-addext", "keyUsage = critical, keyCertSign, cRLSign"],
            &["-keyout", &path("ca.key"), "-out", &path("ca.pem")],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                &path("server.key"),
                "-out",
                &path("server.csr"),
            ],
        ]
        .concat(),
    );
    let serial = format!("0x{:016x}", fastrand::u64(1..));
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-set_serial",
        &serial,
        "-days",
        "3",
        "-sha256",
        "-extfile",
        &path("server.ext"),
        "-out",
        &path("server.pem"),
    ]);
}

/// Runs the `openssl` tool; panics with its output when it fails, or with what to install when
/// it is missing.
fn openssl(args: &[&str]) {
    let out = match Command::new("openssl").args(args).stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the openssl tool, which makes the test Dovecot's certificates, is missing: run scripts/test, \
             or apt-get install openssl"
        ),
        Err(e) => panic!("run openssl: {e}"),
    };
    assert!(
        out.status.success(),
        "openssl {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// Whether an IMAP server answers on `addr` with an OK greeting.
fn greets(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let ok = BufReader::new(&stream).read_line(&mut line).is_ok() && line.starts_with("* OK");
    let _ = stream.write_all(b"z LOGOUT\r\n");
    ok
}

/// A process, from /proc.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    ppid: u32,
    /// The executable's name (`imap`, `imap-login`, `log`...).
    comm: String,
    /// argv joined by spaces; Dovecot's children show `dovecot-<instance>/<service>...`.
    cmdline: String,
}

/// All live (not zombie) processes.
fn processes() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Some((state, ppid, comm)) = read_stat(pid) else {
            continue;
        };
        if state == 'Z' || state == 'X' {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push(Proc {
            pid,
            ppid,
            comm,
            cmdline,
        });
    }
    out
}

/// State, parent PID and executable name from /proc/PID/stat: `pid (comm) S ppid ...`.
fn read_stat(pid: u32) -> Option<(char, u32, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid, comm))
}

/// Whether the process exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    matches!(read_stat(pid), Some((state, _, _)) if state != 'Z' && state != 'X')
}

/// `kill -SIG pid...`; processes that are already gone are ignored.
fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// IMAP's modified UTF-7 for mailbox names (RFC 3501 5.1.3): "Sent" stays, "Skräp" is "Skr&AOQ-p".
pub fn mutf7_encode(name: &str) -> String {
    fn flush(out: &mut String, pending: &mut Vec<u16>) {
        if pending.is_empty() {
            return;
        }
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out.push('-');
        pending.clear();
    }
    let mut out = String::new();
    let mut pending = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut pending);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// What STATUS says about a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStatus {
    pub messages: u32,
    pub uidnext: u32,
    pub uidvalidity: u32,
    pub highestmodseq: u64,
}

/// A minimal blocking IMAP client to set up and inspect test mailboxes: tagged commands,
/// literals both ways. Panics on anything unexpected (except `try_login` and `command`).
/// Folder names are UTF-8 (sent in modified UTF-7) with `/` as separator.
pub struct ImapSetup {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

/// The outcome of one command: `tagged` is the final line (`A3 OK [APPENDUID 7 1] ...`),
/// `untagged` the `*` lines before it, literals inlined.
#[derive(Debug, Clone)]
pub struct ImapResponse {
    pub untagged: Vec<String>,
    pub tagged: String,
}

impl ImapResponse {
    /// `OK`, `NO` or `BAD`.
    pub fn status(&self) -> &str {
        self.tagged.split_whitespace().nth(1).unwrap_or("")
    }

    pub fn is_ok(&self) -> bool {
        self.status() == "OK"
    }
}

enum Arg<'a> {
    Text(String),
    Literal(&'a [u8]),
}

impl ImapSetup {
    /// Connects and reads the greeting (not logged in).
    pub fn connect(port: u16) -> ImapSetup {
        let stream = TcpStream::connect((HOST, port)).unwrap_or_else(|e| panic!("connect to {HOST}:{port}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set read timeout");
        let mut client = ImapSetup {
            reader: BufReader::new(stream.try_clone().expect("clone stream")),
            writer: stream,
            tag: 0,
        };
        let greeting = client.read_response_line().expect("read the IMAP greeting");
        assert!(greeting.starts_with("* OK"), "unexpected IMAP greeting {greeting:?}");
        client
    }

    pub fn login(port: u16, user: &str, pass: &str) -> ImapSetup {
        Self::try_login(port, user, pass).unwrap_or_else(|e| panic!("IMAP login as {user}: {e}"))
    }

    /// Logs in; Err is the server's tagged NO/BAD line.
    pub fn try_login(port: u16, user: &str, pass: &str) -> Result<ImapSetup, String> {
        let mut client = Self::connect(port);
        let response = client.run(&[
            Arg::Text("LOGIN ".into()),
            astring(user),
            Arg::Text(" ".into()),
            astring(pass),
        ]);
        if response.is_ok() {
            Ok(client)
        } else {
            Err(response.tagged)
        }
    }

    /// Sends one command line (without tag; no literals) and returns the response, whatever
    /// its status.
    pub fn command(&mut self, command: &str) -> ImapResponse {
        self.run(&[Arg::Text(command.to_string())])
    }

    /// Like `command`, but a broken connection is an Err instead of a panic (to check that
    /// the server dropped it).
    pub fn try_command(&mut self, command: &str) -> std::io::Result<ImapResponse> {
        self.try_run(&[Arg::Text(command.to_string())])
    }

    /// Like `command`, panicking unless the answer is OK; returns the untagged lines.
    pub fn ok(&mut self, command: &str) -> Vec<String> {
        let response = self.command(command);
        assert!(response.is_ok(), "IMAP {command:?} failed: {}", response.tagged);
        response.untagged
    }

    pub fn create(&mut self, folder: &str) {
        let response = self.run(&[Arg::Text(format!("CREATE {}", quote_mailbox(folder)))]);
        assert!(response.is_ok(), "CREATE {folder:?} failed: {}", response.tagged);
    }

    /// Appends a message without flags; returns its UID (from APPENDUID).
    pub fn append(&mut self, folder: &str, message: &[u8]) -> u32 {
        self.append_with_flags(folder, "", message)
    }

    /// Appends with flags, e.g. `"\\Seen \\Answered"`; returns its UID.
    pub fn append_with_flags(&mut self, folder: &str, flags: &str, message: &[u8]) -> u32 {
        self.append_full(folder, flags, None, message)
    }

    /// Appends with the INTERNALDATE given (IMAP's `"23-Nov-2026 10:00:00 +0000"`) instead of
    /// the time of appending: for a test whose message has a fixed Date header and whose
    /// assertions depend on the time Rapport gives it (the Date header counts only when it is
    /// within 30 days of the INTERNALDATE; appended at the real time, a fixed date stops
    /// counting a month after it was written). Returns its UID.
    pub fn append_dated(&mut self, folder: &str, internal_date: &str, message: &[u8]) -> u32 {
        self.append_full(folder, "", Some(internal_date), message)
    }

    fn append_full(&mut self, folder: &str, flags: &str, internal_date: Option<&str>, message: &[u8]) -> u32 {
        // Without a date given, the server's clock; but under `scripts/test-ahead` (FAKETIME
        // set) this process's: Dovecot would take the date from the file it writes, whose time
        // is the kernel's, which ignores the moved clock.
        let ahead = std::env::var_os("FAKETIME")
            .is_some()
            .then(|| chrono::Utc::now().format("%d-%b-%Y %H:%M:%S +0000").to_string());
        let date = match internal_date.or(ahead.as_deref()) {
            Some(d) => format!("\"{d}\" "),
            None => String::new(),
        };
        let response = self.run(&[
            Arg::Text(format!("APPEND {} ({flags}) {date}", quote_mailbox(folder))),
            Arg::Literal(message),
        ]);
        assert!(response.is_ok(), "APPEND to {folder:?} failed: {}", response.tagged);
        let code = response
            .tagged
            .split("[APPENDUID ")
            .nth(1)
            .unwrap_or_else(|| panic!("no APPENDUID in {:?}", response.tagged));
        code.split([' ', ']'])
            .nth(1)
            .and_then(|uid| uid.parse().ok())
            .unwrap_or_else(|| panic!("bad APPENDUID in {:?}", response.tagged))
    }

    pub fn status(&mut self, folder: &str) -> MailboxStatus {
        let untagged = self.ok(&format!(
            "STATUS {} (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)",
            quote_mailbox(folder)
        ));
        let line = untagged
            .iter()
            .find(|l| l.starts_with("* STATUS "))
            .unwrap_or_else(|| panic!("no STATUS response for {folder:?}: {untagged:?}"));
        let items = &line[line.rfind('(').expect("STATUS item list") + 1..line.rfind(')').expect("STATUS item list")];
        let words: Vec<&str> = items.split_whitespace().collect();
        let get = |name: &str| -> u64 {
            words
                .chunks(2)
                .find(|pair| pair[0].eq_ignore_ascii_case(name))
                .and_then(|pair| pair.get(1)?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        };
        MailboxStatus {
            messages: get("MESSAGES") as u32,
            uidnext: get("UIDNEXT") as u32,
            uidvalidity: get("UIDVALIDITY") as u32,
            highestmodseq: get("HIGHESTMODSEQ"),
        }
    }

    pub fn uidvalidity(&mut self, folder: &str) -> u32 {
        self.status(folder).uidvalidity
    }

    /// The `* LIST` lines for all folders, e.g. `* LIST (\HasNoChildren \Sent) "/" Sent`.
    pub fn list(&mut self) -> Vec<String> {
        self.ok("LIST \"\" \"*\"")
    }

    /// Sends IDLE and waits until an untagged line contains `needle` (true) or `timeout` passes
    /// (false), then ends the IDLE.
    pub fn idle_until(&mut self, needle: &str, timeout: Duration) -> bool {
        self.tag += 1;
        let tag = format!("A{}", self.tag);
        self.send(format!("{tag} IDLE\r\n").as_bytes());
        let line = self.read_response_line().expect("read IDLE continuation");
        assert!(line.starts_with('+'), "IDLE refused: {line:?}");
        let deadline = Instant::now() + timeout;
        let mut seen = false;
        while !seen && Instant::now() < deadline {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            self.writer.set_read_timeout(Some(wait)).expect("set read timeout");
            match self.read_response_line() {
                Ok(line) => seen = line.contains(needle),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                Err(e) => panic!("reading during IDLE: {e}"),
            }
        }
        self.writer
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("set read timeout");
        self.send(b"DONE\r\n");
        loop {
            let line = self.read_response_line().expect("read the end of IDLE");
            if line.starts_with(&format!("{tag} ")) {
                assert!(line.starts_with(&format!("{tag} OK")), "IDLE ended with {line:?}");
                return seen;
            }
            seen = seen || line.contains(needle);
        }
    }

    pub fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }

    fn run(&mut self, args: &[Arg<'_>]) -> ImapResponse {
        self.try_run(args)
            .unwrap_or_else(|e| panic!("talking to the IMAP server: {e}"))
    }

    fn try_run(&mut self, args: &[Arg<'_>]) -> std::io::Result<ImapResponse> {
        self.tag += 1;
        let tag = format!("A{}", self.tag);
        let mut untagged = Vec::new();
        let mut pending = format!("{tag} ").into_bytes();
        for arg in args {
            match arg {
                Arg::Text(text) => pending.extend_from_slice(text.as_bytes()),
                Arg::Literal(bytes) => {
                    pending.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                    self.try_send(&pending)?;
                    pending.clear();
                    // Wait for the go-ahead; a tagged answer instead means refused.
                    loop {
                        let line = self.read_response_line()?;
                        if line.starts_with('+') {
                            break;
                        }
                        if line.starts_with(&format!("{tag} ")) {
                            return Ok(ImapResponse { untagged, tagged: line });
                        }
                        untagged.push(line);
                    }
                    pending.extend_from_slice(bytes);
                }
            }
        }
        pending.extend_from_slice(b"\r\n");
        self.try_send(&pending)?;
        loop {
            let line = self.read_response_line()?;
            if line.starts_with(&format!("{tag} ")) {
                return Ok(ImapResponse { untagged, tagged: line });
            }
            untagged.push(line);
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("write to the IMAP server");
    }

    fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// One response line without CRLF, with any `{n}` literals it announces read and inlined.
    fn read_response_line(&mut self) -> std::io::Result<String> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line)?;
            if line.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the IMAP server closed the connection",
                ));
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            let literal = line
                .strip_suffix(b"}")
                .and_then(|l| l.iter().rposition(|&b| b == b'{').map(|i| &l[i + 1..]))
                .and_then(|n| std::str::from_utf8(n).ok()?.trim_end_matches('+').parse::<usize>().ok());
            out.extend_from_slice(&line);
            match literal {
                Some(n) => {
                    out.extend_from_slice(b"\r\n");
                    let start = out.len();
                    out.resize(start + n, 0);
                    self.reader.read_exact(&mut out[start..])?;
                }
                None => return Ok(String::from_utf8_lossy(&out).into_owned()),
            }
        }
    }
}

/// A quoted string, or a literal when it cannot be quoted.
fn astring(s: &str) -> Arg<'_> {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Arg::Text(format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
    } else {
        Arg::Literal(s.as_bytes())
    }
}

fn quote_mailbox(folder: &str) -> String {
    let encoded = mutf7_encode(folder);
    format!("\"{}\"", encoded.replace('\\', "\\\\").replace('"', "\\\""))
}
