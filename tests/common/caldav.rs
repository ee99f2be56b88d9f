//! Real CalDAV servers for tests: one Radicale or Xandikos per test, in a temp dir, on a free
//! loopback port, with its own configuration (no authentication), killed by PID when dropped.
//! A missing server fails the test and names the Debian package to install.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DavKind {
    Radicale,
    Xandikos,
}

pub struct DavServer {
    pub kind: DavKind,
    /// The URL Rapport is configured with (discovery starts there).
    pub base_url: String,
    /// Path of the calendar collection events are written to.
    pub calendar_path: String,
    /// The user name sent with Basic auth (Radicale takes the principal from it).
    pub username: String,
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn require(binary: &str, package: &str) {
    if !Path::new(binary).exists() {
        panic!("{binary} is missing: install it with `apt-get install {package}` (scripts/test does this)");
    }
}

impl DavServer {
    pub async fn start(kind: DavKind) -> DavServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let (child, base_url, calendar_path, username) = match kind {
            DavKind::Radicale => {
                require("/usr/bin/radicale", "radicale");
                let config = dir.path().join("config");
                std::fs::write(
                    &config,
                    format!(
                        "[server]\nhosts = 127.0.0.1:{port}\n[auth]\ntype = none\n[rights]\ntype = owner_only\n\
                         [storage]\nfilesystem_folder = {}\n[logging]\nlevel = warning\n",
                        dir.path().join("collections").display()
                    ),
                )
                .unwrap();
                let child = Command::new("/usr/bin/radicale")
                    .arg("--config")
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start radicale");
                (
                    child,
                    format!("http://127.0.0.1:{port}/"),
                    "/alice/work/".to_string(),
                    "alice".to_string(),
                )
            }
            DavKind::Xandikos => {
                require("/usr/bin/xandikos", "xandikos");
                let child = Command::new("/usr/bin/xandikos")
                    .arg("-d")
                    .arg(dir.path().join("data"))
                    .args(["--defaults", "-l", "127.0.0.1", "-p", &port.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start xandikos");
                (
                    child,
                    format!("http://127.0.0.1:{port}/"),
                    "/user/calendars/calendar/".to_string(),
                    "alice".to_string(),
                )
            }
        };
        let server = DavServer {
            kind,
            base_url,
            calendar_path,
            username,
            port,
            child,
            _dir: dir,
            http: reqwest::Client::new(),
        };
        server.wait_until_up().await;
        if kind == DavKind::Radicale {
            let url = format!("http://127.0.0.1:{port}{}", server.calendar_path);
            let resp = server
                .request("MKCALENDAR", &url)
                .body(
                    r#"<?xml version="1.0"?><c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><d:displayname>Work</d:displayname></d:prop></d:set></c:mkcalendar>"#,
                )
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "MKCALENDAR: {}", resp.status());
        }
        server
    }

    fn request(&self, method: &str, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
            .basic_auth(&self.username, Some("unused"))
    }

    async fn wait_until_up(&self) {
        for _ in 0..300 {
            if let Ok(r) = self
                .request("PROPFIND", &format!("http://127.0.0.1:{}/", self.port))
                .header("Depth", "0")
                .send()
                .await
                && r.status().as_u16() < 500
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{:?} did not start on port {}", self.kind, self.port);
    }

    fn object_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}{}{name}", self.port, self.calendar_path)
    }

    /// Creates or replaces a calendar object.
    pub async fn put(&self, name: &str, ics: &str) {
        let resp = self
            .request("PUT", &self.object_url(name))
            .header("Content-Type", "text/calendar; charset=utf-8")
            .body(ics.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success(),
            "PUT {name}: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }

    /// Replaces the whole collection with one iCalendar stream (Radicale splits it by UID).
    pub async fn put_collection(&self, ics: String) {
        let url = format!("http://127.0.0.1:{}{}", self.port, self.calendar_path);
        let resp = self
            .request("PUT", &url)
            .header("Content-Type", "text/calendar; charset=utf-8")
            .body(ics)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success(),
            "PUT collection: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }

    /// The collection's URL with the test login in it.
    pub fn calendar_url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.calendar_path)
    }

    /// A request with the test login, for clients that talk to the server directly.
    pub fn raw(&self, method: &str, url: &str) -> reqwest::RequestBuilder {
        self.request(method, url)
    }

    pub async fn delete(&self, name: &str) {
        let resp = self.request("DELETE", &self.object_url(name)).send().await.unwrap();
        assert!(resp.status().is_success(), "DELETE {name}: {}", resp.status());
    }
}

impl Drop for DavServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
