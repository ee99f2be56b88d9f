//! `rapport doctor` and `rapport status` against a real Dovecot (TLS and plain), on SQLite and
//! PostgreSQL.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestDb;
use common::dovecot::Dovecot;
use common::smtp::SmtpSink;

fn rapport(config: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RAPPORT_LOG", "warn")
        .output()
        .expect("run rapport");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn line<'a>(out: &'a str, subject: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(5..).is_some_and(|rest| rest.starts_with(subject)))
        .unwrap_or_else(|| panic!("no line for {subject}:\n{out}"))
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

store_tests!(doctor_gives_one_verdict_per_check);

async fn doctor_gives_one_verdict_per_check(db: TestDb) {
    let dovecot = Dovecot::start_tls(&[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let smtp = SmtpSink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "alice-pw\n").unwrap();
    std::fs::write(dir.path().join("bob.pw"), "not-bobs-pw\n").unwrap();
    let ca = dovecot.ca_cert_path();
    let good = format!(
        "  - id: alice-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {}\n    tls: implicit\n    ca_file: {}\n    username: alice\n    password_file: alice.pw\n    smtp:\n      host: 127.0.0.1\n      port: {}\n      tls: none\n",
        dovecot.tls_port(),
        ca.display(),
        smtp.port
    );
    let bad = format!(
        "  - id: bob-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    username: bob\n    password_file: bob.pw\n  - id: carol-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    username: carol\n    password_file: bob.pw\n    smtp:\n      host: 127.0.0.1\n      port: {}\n      tls: none\n",
        dovecot.port(),
        closed_port(),
        closed_port()
    );
    let write = |boxes: &str, owned: &str| {
        let yaml = common::config_yaml(&db.url, &format!("mailboxes:\n{boxes}")).replace(
            "    time_zone: Europe/Stockholm\n",
            &format!("    time_zone: Europe/Stockholm\n    mailboxes: [{owned}]\n"),
        );
        let path = dir.path().join("rapport.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    };

    let config = write(&format!("{good}{bad}"), "alice-imap, bob-imap, carol-imap");
    let (ok, out) = rapport(&config, &["doctor"]);
    assert!(!ok, "a failed check fails the command:\n{out}");
    assert!(line(&out, "config").starts_with("ok"), "{out}");
    assert!(line(&out, "database:").starts_with("ok"), "{out}");
    assert!(line(&out, "mailbox alice-imap: reach").starts_with("ok"), "{out}");
    let tls = line(&out, "mailbox alice-imap: tls");
    assert!(tls.starts_with("ok") && tls.contains("implicit TLS"), "{out}");
    assert!(line(&out, "mailbox alice-imap: login").starts_with("ok"), "{out}");
    assert!(line(&out, "mailbox bob-imap: reach").starts_with("ok"), "{out}");
    let bob = line(&out, "mailbox bob-imap: login");
    assert!(
        bob.starts_with("FAIL") && bob.contains("refused the login of bob"),
        "{out}"
    );
    assert!(!out.contains("not-bobs-pw"), "no password in the output");
    assert!(line(&out, "mailbox carol-imap: reach").starts_with("FAIL"), "{out}");
    assert!(
        !out.contains("mailbox carol-imap: login"),
        "no login attempt where the server is unreachable:\n{out}"
    );
    // SMTP: the sink answers (no login configured), nothing listens on carol's port.
    assert!(line(&out, "mailbox alice-imap: smtp").starts_with("ok"), "{out}");
    assert!(line(&out, "mailbox carol-imap: smtp").starts_with("FAIL"), "{out}");
    assert!(smtp.messages().is_empty(), "the check sends nothing");
    if db.url.starts_with("postgres") {
        let clock = line(&out, "clock (PostgreSQL server)");
        assert!(clock.starts_with("ok") && clock.contains("skew"), "{out}");
    }
    assert!(out.lines().any(|l| l == "verdict: FAIL"), "{out}");

    // A TLS certificate the client does not trust fails at the TLS step.
    let untrusted = good.replace(&format!("    ca_file: {}\n", ca.display()), "");
    let config = write(&untrusted, "alice-imap");
    let (ok, out) = rapport(&config, &["doctor"]);
    assert!(!ok, "{out}");
    assert!(line(&out, "mailbox alice-imap: tls").starts_with("FAIL"), "{out}");

    let config = write(&good, "alice-imap");
    let (ok, out) = rapport(&config, &["doctor"]);
    assert!(ok, "{out}");
    assert!(out.lines().any(|l| l == "verdict: ok"), "{out}");

    // status: each mailbox with its state, last sync and lag; the outbox.
    let (ok, out) = rapport(&config, &["run", "--once"]);
    assert!(ok, "{out}");
    let (ok, out) = rapport(&config, &["status"]);
    assert!(ok, "{out}");
    let alice = out
        .lines()
        .find(|l| l.trim_start().starts_with("alice-imap"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        alice.contains(" ok ") && alice.contains("last sync 20") && alice.contains("(lag "),
        "{out}"
    );
    assert!(out.contains("outbox:"), "{out}");

    // An invalid config: the first line says so and nothing else is tried.
    std::fs::write(&config, "internal_domains: [example.com]\nreps: 3\n").unwrap();
    let (ok, out) = rapport(&config, &["doctor"]);
    assert!(!ok);
    assert!(out.starts_with("FAIL config"), "{out}");
    assert!(!out.contains("database"), "{out}");
}
