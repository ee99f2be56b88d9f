//! OAuth2 for XOAUTH2 mailboxes against a local OAuth2 provider (tests/common/idp.rs): refresh
//! before expiry, rotation, `invalid_grant`, the browser (PKCE) and device flows of
//! `rapport auth`, and end to end with Dovecot validating the bearer tokens by introspection.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use common::dovecot::{Dovecot, ImapSetup};
use common::idp::Idp;
use common::{TestDb, message};
use rapport::clock::ManualClock;
use rapport::config::{Config, ImapAuth, MailboxSource, OAuthConfig};
use rapport::daemon::mailbox_tasks;
use rapport::oauth::{OAuthError, StoredToken, TokenSource, load_token, save_token};

fn oauth_config(idp: &Idp, dir: &std::path::Path) -> OAuthConfig {
    let yaml = format!(
        "internal_domains: [example.com]\nreps:\n  - id: alice\n    name: Alice\n    email: alice@example.com\n    mailboxes: [alice-imap]\nmailboxes:\n  - id: alice-imap\n    kind: imap\n    host: imap.example.com\n    username: alice@example.com\n{}",
        idp.oauth_yaml("client-alice", "tokens/alice.json")
    );
    let path = dir.join("rapport.yaml");
    std::fs::write(&path, yaml).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    match &config.mailboxes[0].source {
        MailboxSource::Imap(i) => match &i.auth {
            ImapAuth::OAuth2(o) => o.as_ref().clone(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_are_refreshed_before_expiry_and_rotated_and_a_revoked_grant_asks_for_auth() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = oauth_config(&idp, dir.path());
    assert_eq!(cfg.token_file, dir.path().join("tokens/alice.json"));
    let first_rt = idp.grant("alice");
    save_token(
        &cfg.token_file,
        &StoredToken {
            refresh_token: first_rt.clone(),
            access_token: None,
            expires_at: None,
        },
    )
    .unwrap();
    let clock = ManualClock::new(common::t0());
    let source = TokenSource::new(&cfg, Arc::new(clock.clone())).unwrap();

    // No access token yet: one refresh; the rotated refresh token replaces the old one.
    let at1 = source.access_token().await.unwrap();
    assert!(at1.expose().starts_with("at-alice-"));
    let stored = load_token(&cfg.token_file).unwrap().unwrap();
    assert_ne!(stored.refresh_token, first_rt, "rotated");
    assert_eq!(mode(&cfg.token_file), 0o600);
    assert_eq!(mode(cfg.token_file.parent().unwrap()), 0o700);
    assert!(!idp.state.lock().unwrap().refresh_tokens.contains_key(&first_rt));

    // Still valid for an hour: no new request.
    clock.advance(chrono::Duration::minutes(30));
    assert_eq!(source.access_token().await.unwrap().expose(), at1.expose());
    assert_eq!(idp.state.lock().unwrap().refreshes, 1);

    // Four minutes before expiry (inside the five-minute margin): refreshed ahead of time.
    clock.advance(chrono::Duration::minutes(26));
    let at2 = source.access_token().await.unwrap();
    assert_ne!(at2.expose(), at1.expose());
    assert_eq!(idp.state.lock().unwrap().refreshes, 2);

    // After a server refused the token: a new one, whatever the clock says.
    let at3 = source.refreshed_token().await.unwrap();
    assert_ne!(at3.expose(), at2.expose());
    assert_eq!(idp.state.lock().unwrap().refreshes, 3);

    // Revoked at the provider: invalid_grant says which command to run.
    idp.state.lock().unwrap().revoke_user("alice");
    clock.advance(chrono::Duration::hours(2));
    match source.access_token().await {
        Err(OAuthError::NeedsAuthorization(msg)) => {
            assert!(msg.contains("invalid_grant"), "{msg}");
            assert!(msg.contains("rapport auth alice-imap"), "{msg}");
        }
        other => panic!("expected NeedsAuthorization, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_flow_uses_pkce_and_the_loopback_redirect() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = oauth_config(&idp, dir.path());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let flow = {
        let cfg = cfg.clone();
        tokio::spawn(async move {
            rapport::oauth::flow::authorize_in_browser(&cfg, rapport::clock::system(), move |url| {
                tx.send(url.to_owned()).unwrap();
            })
            .await
        })
    };
    // The "browser": read the consent URL, let the provider issue a code, follow the redirect.
    let url = oauth2::url::Url::parse(&rx.recv().await.unwrap()).unwrap();
    assert!(url.as_str().starts_with(&format!("{}/authorize?", idp.base)), "{url}");
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "client-alice");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "imap offline_access");
    let redirect = &q["redirect_uri"];
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    idp.state
        .lock()
        .unwrap()
        .codes
        .insert("code-1".into(), (q["code_challenge"].clone(), "alice".into()));
    let http = reqwest::Client::new();
    // A wrong state is turned away and the flow keeps waiting.
    let wrong = http
        .get(format!("{redirect}?code=code-1&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let ok = http
        .get(format!("{redirect}?code=code-1&state={}", q["state"]))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let token = flow.await.unwrap().unwrap();
    let stored = load_token(&cfg.token_file).unwrap().unwrap();
    assert_eq!(stored.refresh_token, token.refresh_token);
    assert!(
        idp.state
            .lock()
            .unwrap()
            .refresh_tokens
            .contains_key(&stored.refresh_token)
    );
    assert_eq!(mode(&cfg.token_file), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapport_auth_device_stores_the_refresh_token() {
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = oauth_config(&idp, dir.path());
    let config_path = dir.path().join("rapport.yaml");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
            .arg("--config")
            .arg(&config_path)
            .args(["auth", "alice-imap", "--device"])
            .env("RAPPORT_LOG", "debug")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("enter the code WDJB-MJHT"), "{stdout}");
    assert!(stdout.contains("mailbox alice-imap is authorized"), "{stdout}");
    let stored = load_token(&cfg.token_file).unwrap().unwrap();
    assert!(stored.refresh_token.starts_with("rt-alice-"));
    assert!(
        !stdout.contains(&stored.refresh_token) && !stderr.contains(&stored.refresh_token),
        "the token is never printed"
    );
    assert!(!stderr.contains(stored.access_token.as_deref().unwrap()));
    assert_eq!(mode(&cfg.token_file), 0o600);
}

store_tests!(xoauth2_login_to_dovecot_refreshes_and_stops_only_the_revoked_mailbox);

async fn xoauth2_login_to_dovecot_refreshes_and_stops_only_the_revoked_mailbox(db: TestDb) {
    let idp = Idp::start().await;
    let dovecot = Dovecot::start_oauth(
        &[("alice", "unused-pw"), ("bob", "bob-pw")],
        &format!("{}/introspect", idp.base),
    );
    for (user, pw) in [("alice", "unused-pw"), ("bob", "bob-pw")] {
        let mut imap = ImapSetup::login(dovecot.port(), user, pw);
        imap.append(
            "INBOX",
            &message(
                &format!("{user}1@acme.example"),
                "sara@acme.example",
                &format!("{user}@example.com"),
                "hi",
                "",
            ),
        );
        imap.logout();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bob.pw"), "bob-pw\n").unwrap();
    let port = dovecot.port();
    let config = common::imap_config(
        &db,
        dir.path(),
        &format!(
            "    mailboxes: [bob-imap]\nmailboxes:\n  - id: alice-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    username: alice\n    poll_interval: 1h\n{}  - id: bob-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    username: bob\n    password_file: bob.pw\n",
            idp.oauth_yaml("client-alice", "alice.json")
        ),
    )
    .await;
    db.store
        .upsert_leads(
            &[rapport::store::NewLead {
                email: "sara@acme.example".into(),
                name: None,
                company_name: None,
                company_domain: None,
                owner_rep: None,
                time_zone: None,
                status: None,
                attributes: Default::default(),
            }],
            rapport::store::LeadColumns::all(),
        )
        .await
        .unwrap();
    let token_file = dir.path().join("alice.json");
    save_token(
        &token_file,
        &StoredToken {
            refresh_token: idp.grant("alice"),
            access_token: None,
            expires_at: None,
        },
    )
    .unwrap();
    let tasks = mailbox_tasks(&config, &db.store).await.unwrap().0;
    let stats = tasks[0].sync_once().await.unwrap();
    assert_eq!(stats.counted, 1, "alice logged in with XOAUTH2");
    assert!(
        idp.state.lock().unwrap().introspections >= 1,
        "Dovecot checked the token"
    );
    let report = rapport::doctor::run(&config.path, rapport::clock::system()).await;
    let text: Vec<String> = report.checks.iter().map(|c| c.to_string()).collect();
    let line = |subject: &str| {
        text.iter()
            .find(|l| l[5..].starts_with(subject))
            .unwrap_or_else(|| panic!("no {subject} in {text:#?}"))
            .clone()
    };
    assert!(line("mailbox alice-imap: oauth token").starts_with("ok"), "{text:#?}");
    assert!(line("mailbox alice-imap: login").starts_with("ok"), "{text:#?}");
    let skew = line("clock (OAuth provider of alice-imap)");
    assert!(skew.starts_with("ok") && skew.contains("skew"), "{text:#?}");
    assert!(!report.failed(), "{text:#?}");
    let refreshes = idp.state.lock().unwrap().refreshes;

    // The provider forgets the access token (but not the refresh token): Dovecot refuses the
    // login, Rapport refreshes and logs in again.
    idp.state.lock().unwrap().access_tokens.clear();
    let mut imap = ImapSetup::login(dovecot.port(), "alice", "unused-pw");
    imap.append(
        "INBOX",
        &message(
            "alice2@acme.example",
            "sara@acme.example",
            "alice@example.com",
            "hi",
            "",
        ),
    );
    imap.logout();
    let stats = tasks[0].sync_once().await.unwrap();
    assert_eq!(stats.counted, 1);
    assert_eq!(idp.state.lock().unwrap().refreshes, refreshes + 1);

    // Revoked: alice's task records auth_failed with the command to run and stops; bob's runs.
    idp.state.lock().unwrap().revoke_user("alice");
    let cancel = tokio_util::sync::CancellationToken::new();
    let alice = mailbox_tasks(&config, &db.store).await.unwrap().0.remove(0);
    tokio::time::timeout(Duration::from_secs(60), alice.run(cancel.clone()))
        .await
        .expect("a revoked grant ends the task");
    let bob = mailbox_tasks(&config, &db.store).await.unwrap().0.remove(1);
    assert_eq!(bob.sync_once().await.unwrap().counted, 1, "bob is unaffected");
    let health = db.store.health().await.unwrap();
    let a = health.iter().find(|h| h.source_id == "alice-imap").unwrap();
    assert_eq!(a.state, "auth_failed");
    assert!(
        a.last_error
            .as_deref()
            .unwrap_or("")
            .contains("rapport auth alice-imap"),
        "{a:?}"
    );
    let status = rapport::daemon::status_text(&db.store, &config).await.unwrap();
    assert!(status.contains("auth_failed"), "{status}");
    let report = rapport::doctor::run(&config.path, rapport::clock::system()).await;
    assert!(report.failed());
    let token = report
        .checks
        .iter()
        .find(|c| c.subject == "mailbox alice-imap: oauth token")
        .unwrap();
    assert!(token.to_string().starts_with("FAIL"), "{token}");
    assert!(token.detail.contains("rapport auth alice-imap"), "{token}");
}
