//! The HTTP listener over real HTTP (port 0 on 127.0.0.1), with the bundled example loaded, on
//! SQLite and PostgreSQL: health, readiness, Prometheus metrics (parsed by the reference
//! Python parser and a strict line check here) that move when an activity is posted, the API
//! with and without its bearer token, paging, and routes added by other modules.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::TestDb;
use rapport::config::Config;
use rapport::daemon::{RunOptions, run};
use rapport::http::HttpServer;
use rapport::sequences::unsubscribe::UnsubscribeKey;
use rapport::targets::Targets;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "s3cret-token-for-tests";

pub struct Running {
    pub base: String,
    pub config: Config,
    pub targets: Targets,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    pub async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

/// Loads the example into `db` and serves it on a free port, with `routes` added.
pub async fn serve_example(db: &TestDb, routes: axum::Router) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("sqlite://rapport-example.db", &db.url)
        + &format!(
            "http:\n  listen: 127.0.0.1:0\n  api_token_file: {}\n",
            token_file.display()
        );
    let config = Config::from_str(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    run(
        config.clone(),
        Arc::new(db.clock.clone()),
        RunOptions { once: true },
        std::future::pending(),
    )
    .await
    .unwrap();
    let targets = Targets::for_config(&config).unwrap_or_else(|e| panic!("{e}"));
    let server = HttpServer::new(db.store.clone(), config.clone(), targets.clone()).with_routes(routes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let task = tokio::spawn(async move { server.serve(listener, c).await.unwrap() });
    Running {
        base,
        config,
        targets,
        cancel,
        task,
        _dir: dir,
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Checks every line of a Prometheus text exposition strictly and returns the samples.
fn strict_parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed: HashSet<String> = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let name = p.next().unwrap();
            let kind = p.next().unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "unexpected line {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line}"
        );
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line}"));
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                assert!(!v.trim_end_matches('"').contains('"'), "{line}");
            }
        }
        assert!(samples.insert(series.to_owned(), value).is_none(), "duplicate {series}");
    }
    samples
}

/// The same text through prometheus_client's parser (Debian `python3-prometheus-client`).
fn python_parse(text: &str) -> BTreeMap<String, f64> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        for fam in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       labels = ','.join('%s=\"%s\"' % kv for kv in sorted(s.labels.items()))\n\
        \x20       print('%s{%s} %r' % (s.name, labels, s.value))\n";
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("/usr/bin/python3 is needed for the Prometheus parser (apt-get install python3-prometheus-client)");
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics (install python3-prometheus-client): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse::<f64>().unwrap())
        })
        .collect()
}

fn series_value(samples: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(k, _)| {
            k.starts_with(&format!("{name}{{")) && labels.iter().all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
}

store_tests!(endpoints_over_real_http);

async fn endpoints_over_real_http(db: TestDb) {
    db.clock.set(utc("2026-11-20T15:00:00Z"));
    let extra = axum::Router::new().route(
        "/unsubscribe/{token}",
        axum::routing::get(|axum::extract::Path(t): axum::extract::Path<String>| async move { format!("bye {t}") }),
    );
    let srv = serve_example(&db, extra).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", srv.base));

    // Health needs no token.
    let r = get("/healthz").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = get("/readyz").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ready: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["sources"]["alice-mail"], "ok");

    // Routes added by other modules are served without a token.
    let r = get("/unsubscribe/abc").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "bye abc");

    // The API: 401 without a token, with a wrong one, and with a malformed header.
    for auth in [None, Some("Bearer nope"), Some(TOKEN), Some("Basic YTpi")] {
        for path in ["/api/v1/progress", "/api/v1/activities"] {
            let mut req = get(path);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} with {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"rapport\"");
        }
    }
    let r = http
        .post(format!("{}/api/v1/activities", srv.base))
        .json(&serde_json::json!({"rep": "alice", "kind": "call"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "POST without a token");

    // Progress through the API equals the library's.
    let r = get("/api/v1/progress?period=month&at=2026-11-18")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let want = rapport::report::progress::progress(
        &db.store,
        &srv.config,
        &srv.targets,
        rapport::targets::PeriodKind::Month,
        utc("2026-11-18T12:00:00Z"),
        db.store.now(),
        &rapport::report::progress::RepFilter::All,
    )
    .await
    .unwrap();
    assert_eq!(body["reps"], serde_json::to_value(&want).unwrap());
    assert_eq!(body["reps"].as_array().unwrap().len(), 3);
    let r = get("/api/v1/progress?period=fortnight")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = get("/api/v1/progress?rep=zed").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Paging through alice's sent mail: every activity once, newest id first.
    let mut seen = Vec::new();
    let mut next: Option<i64> = None;
    loop {
        let mut url = "/api/v1/activities?rep=alice&kind=email_sent&limit=25".to_string();
        if let Some(n) = next {
            url += &format!("&before={n}");
        }
        let r = get(&url).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let page: serde_json::Value = r.json().await.unwrap();
        for a in page["activities"].as_array().unwrap() {
            assert_eq!(a["rep"], "alice");
            assert_eq!(a["kind"], "email_sent");
            seen.push(a["id"].as_i64().unwrap());
        }
        match page["next"].as_i64() {
            Some(n) => next = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 66, "alice sent 66 messages (config/example/expected.json)");
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
    // By lead and time.
    let r = get("/api/v1/activities?lead=SARA.LIND@acme-robotics.example&from=2026-10-01&to=2026-12-01")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    let list = page["activities"].as_array().unwrap();
    assert!(!list.is_empty());
    assert!(list.iter().all(|a| {
        a["leads"]
            .as_array()
            .unwrap()
            .contains(&"sara.lind@acme-robotics.example".into())
    }));
    let r = get("/api/v1/activities?kind=lunch")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Metrics parse, and the counters move when an activity is posted.
    let text = get("/metrics").send().await.unwrap().text().await.unwrap();
    let strict = strict_parse(&text);
    let py = python_parse(&text);
    assert_eq!(
        series_value(
            &py,
            "rapport_activities_total",
            &[("rep", "alice"), ("kind", "email_sent")]
        ),
        Some(66.0)
    );
    assert_eq!(
        series_value(
            &strict,
            "rapport_activities_total",
            &[("rep", "alice"), ("kind", "email_sent")]
        ),
        Some(66.0)
    );
    assert_eq!(
        series_value(&py, "rapport_source_up", &[("source", "bob-mail")]),
        Some(1.0)
    );
    assert!(series_value(&py, "rapport_source_sync_lag_seconds", &[("source", "chiara-mail")]).is_some());
    assert_eq!(
        series_value(&py, "rapport_activities_total", &[("rep", "alice"), ("kind", "call")]),
        None
    );

    let post = |body: serde_json::Value| {
        http.post(format!("{}/api/v1/activities", srv.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let r = post(serde_json::json!({
        "rep": "alice", "kind": "call", "lead": "sara.lind@acme-robotics.example",
        "at": "2026-11-20 09:30", "note": "follow-up", "id": "phone-1"
    }))
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let logged: serde_json::Value = r.json().await.unwrap();
    assert!(logged["id"].as_i64().is_some());
    // The same id again: stored once.
    let r = post(serde_json::json!({"rep": "alice", "kind": "call", "id": "phone-1", "at": "2026-11-20 09:30"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (bad, status) in [
        (serde_json::json!({"rep": "zed", "kind": "call"}), 422),
        (serde_json::json!({"rep": "alice", "kind": "email_sent"}), 422),
        (
            serde_json::json!({"rep": "alice", "kind": "call", "lead": "not an address"}),
            422,
        ),
        (
            serde_json::json!({"rep": "alice", "kind": "call", "at": "yesterday"}),
            422,
        ),
        (
            serde_json::json!({"rep": "alice", "kind": "call", "colour": "red"}),
            400,
        ),
    ] {
        let r = post(bad.clone()).await.unwrap();
        assert_eq!(r.status(), status, "{bad}");
    }
    let text = get("/metrics").send().await.unwrap().text().await.unwrap();
    let py = python_parse(&text);
    assert_eq!(
        series_value(&py, "rapport_activities_total", &[("rep", "alice"), ("kind", "call")]),
        Some(1.0)
    );
    // The posted call is in the listing, with its lead.
    let r = get("/api/v1/activities?rep=alice&kind=call")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["activities"].as_array().unwrap().len(), 1);
    assert_eq!(page["activities"][0]["leads"][0], "sara.lind@acme-robotics.example");
    assert_eq!(page["activities"][0]["occurred_at"], "2026-11-20T08:30:00Z");

    // The dashboard renders without a token.
    let r = get("/?period=month").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = r.text().await.unwrap();
    for rep in ["alice", "bob", "chiara"] {
        assert!(html.contains(&format!("data-rep=\"{rep}\"")), "{rep} missing");
    }
    srv.stop().await;
}

/// No token configured: the API stays locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_without_a_configured_token_is_locked() {
    let db = TestDb::sqlite().await;
    let config = common::test_config(&db.url);
    db.store.sync_reps(&config).await.unwrap();
    let server = HttpServer::new(db.store.clone(), config, Targets::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let task = tokio::spawn(async move { server.serve(listener, c).await.unwrap() });
    let r = reqwest::Client::new()
        .get(format!("{base}/api/v1/activities"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("no api_token"));
    let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    cancel.cancel();
    task.await.unwrap();
}

/// Runs headless Chromium (Debian's `chromium`) with `args` and returns its stdout; the
/// browser is killed by PID if it has not finished within two minutes.
fn chromium(profile: &Path, args: &[String]) -> String {
    let mut child = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromium ({e}): apt-get install chromium"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(std::time::Duration::from_secs(120)).is_err() {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status();
        }
    });
    let mut out = String::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = child.wait().unwrap();
    let _ = tx.send(());
    watchdog.join().unwrap();
    assert!(status.success(), "chromium failed: {status}");
    out
}

/// What the dashboard shows, read back from the DOM Chromium built: rep → goal → (done, target).
fn shown_numbers(dom: &str) -> BTreeMap<String, BTreeMap<String, (i64, Option<i64>)>> {
    let attr = |s: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        let start = s.find(&key).unwrap_or_else(|| panic!("no {name} in {s}")) + key.len();
        s[start..start + s[start..].find('"').unwrap()].to_owned()
    };
    let mut out = BTreeMap::new();
    for section in dom.split("<section class=\"rep\"").skip(1) {
        let rep = attr(section, "data-rep");
        let mut goals = BTreeMap::new();
        for goal in section.split("<div class=\"goal\"").skip(1) {
            let name = attr(goal, "data-goal");
            let done: i64 = attr(goal, "data-done").parse().unwrap();
            // The number a person reads must be the same as the attribute.
            assert!(goal.contains(&format!("<b class=\"done\">{done}</b>")), "{rep}/{name}");
            let target = attr(goal, "data-target").parse::<i64>().ok();
            if let Some(t) = target {
                assert!(
                    goal.contains(&format!("<span class=\"target\">{t}</span>")),
                    "{rep}/{name}"
                );
            }
            goals.insert(name, (done, target));
        }
        out.insert(rep, goals);
    }
    out
}

/// The dashboard in headless Chromium: the DOM shows each rep's numbers for the period (as
/// computed from the store), a pace marker per goal with a target, a 30-day chart whose bars
/// add up to the activities of those days; and a phone-sized screenshot is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let db = TestDb::sqlite().await;
    db.clock.set(utc("2026-11-20T15:00:00Z"));
    let srv = serve_example(&db, axum::Router::new()).await;
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/?period=month", srv.base);
    let dom = chromium(profile.path(), &["--dump-dom".into(), url.clone()]);
    let shown = shown_numbers(&dom);

    let want = rapport::report::progress::progress(
        &db.store,
        &srv.config,
        &srv.targets,
        rapport::targets::PeriodKind::Month,
        db.store.now(),
        db.store.now(),
        &rapport::report::progress::RepFilter::All,
    )
    .await
    .unwrap();
    let want: BTreeMap<String, BTreeMap<String, (i64, Option<i64>)>> = want
        .iter()
        .map(|r| {
            (
                r.rep_id.clone(),
                r.goals.iter().map(|g| (g.goal.clone(), (g.done, g.target))).collect(),
            )
        })
        .collect();
    assert_eq!(shown, want);
    assert!(shown["alice"]["emails_sent"].0 > 0);
    assert_eq!(shown["chiara"]["emails_sent"].1, Some(30));
    let with_target: usize = want
        .values()
        .flat_map(|g| g.values())
        .filter(|(_, t)| t.is_some())
        .count();
    assert_eq!(dom.matches("class=\"pace\"").count(), with_target);

    // Each rep's chart: 30 bars whose counts add up to the rep's activities of those 30 days.
    for section in dom.split("<section class=\"rep\"").skip(1) {
        let bars: Vec<i64> = section
            .split("data-count=\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
            .collect();
        assert_eq!(bars.len(), 30);
        let total_attr = section.split("<figure data-total=\"").nth(1).unwrap();
        let total: i64 = total_attr[..total_attr.find('"').unwrap()].parse().unwrap();
        assert_eq!(bars.iter().sum::<i64>(), total);
        assert!(total > 0);
    }

    // A phone-sized screenshot, kept for people to look at.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-phone.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=412,1400".into(),
            url,
        ],
    );
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000, "screenshot is suspiciously small");
    srv.stop().await;
}

/// `rapport run` starts the listener as one of its supervised tasks and stops it on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_serves_http_as_a_supervised_task() {
    let db = TestDb::sqlite().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("unsubscribe.key");
    std::fs::write(&key_file, "the-unsubscribe-key\n").unwrap();
    let config = Config::from_str(
        &dir.path().join("rapport.yaml"),
        &common::config_yaml(
            &db.url,
            &format!(
                "http:\n  listen: 127.0.0.1:{port}\nsequences:\n  unsubscribe_key_file: {}\n",
                key_file.display()
            ),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(config.http.enabled);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(run(
        config,
        Arc::new(db.clock.clone()),
        RunOptions { once: false },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let client = reqwest::Client::new();
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await {
            answered = Some(r.status());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        answered,
        Some(reqwest::StatusCode::OK),
        "the daemon never served /healthz"
    );
    // The unsubscribe links of sequence emails are served by the same listener.
    let secret = std::fs::read_to_string(&key_file).unwrap();
    let token = UnsubscribeKey::new(secret.trim().as_bytes()).token(1, 2);
    let page = client
        .get(format!("http://127.0.0.1:{port}/unsubscribe/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Stop receiving these emails?"));
    let forged = client
        .get(format!("http://127.0.0.1:{port}/unsubscribe/1-2-{}", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::NOT_FOUND);
    stop_tx.send(()).unwrap();
    daemon.await.unwrap().unwrap();
    assert!(
        client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err(),
        "the listener is closed after shutdown"
    );
}
