//! The test Dovecot harness (tests/common/dovecot.rs) works: a real server per test that the
//! IMAP tests can rely on.

mod common;

use std::time::{Duration, Instant};

use common::dovecot::{Dovecot, ImapSetup, mutf7_encode};

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: Carol Customer <carol@customer.test>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{}@customer.test>\r\nDate: Mon, 2 Nov 2026 09:00:00 +0100\r\n\r\nHello.\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

/// Whether the process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().chars().next()))
        .is_some_and(|state| state != Some('Z') && state != Some('X'))
}

#[test]
fn starts_and_takes_appends_in_inbox_and_sent() {
    let dovecot = Dovecot::start(&[("alice", "secret")]);
    assert_eq!(dovecot.host(), "127.0.0.1");
    let mut imap = ImapSetup::login(dovecot.port(), "alice", "secret");
    assert_eq!(imap.append("INBOX", &message("first")), 1);
    assert_eq!(imap.append("INBOX", &message("second")), 2);
    assert_eq!(imap.append_with_flags("Sent", "\\Seen", &message("reply")), 1);
    let inbox = imap.status("INBOX");
    assert_eq!((inbox.messages, inbox.uidnext), (2, 3));
    assert!(inbox.highestmodseq > 0, "CONDSTORE: {inbox:?}");
    assert_eq!(imap.status("Sent").messages, 1);

    imap.ok("SELECT INBOX");
    let fetched = imap.ok("UID FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert!(fetched.iter().any(|l| l.contains("Subject: second")), "{fetched:?}");
    imap.create("Customers/Acme");
    assert_eq!(imap.append("Customers/Acme", &message("in a subfolder")), 1);
    imap.logout();

    // On disk: Maildir++ under maildir(), owned by rapport-mail.
    let root = dovecot.maildir("alice");
    let files = |dir: std::path::PathBuf| {
        ["cur", "new"]
            .iter()
            .map(|sub| std::fs::read_dir(dir.join(sub)).map(|d| d.count()).unwrap_or(0))
            .sum::<usize>()
    };
    assert_eq!(files(root.clone()), 2);
    assert_eq!(files(root.join(".Sent")), 1);
    assert_eq!(files(root.join(".Customers.Acme")), 1);
    let log = dovecot.log();
    assert!(log.contains("Login: user=<alice>"), "{log}");
    assert!(log.contains("save: box=Sent, uid=1"), "{log}");
}

#[test]
fn has_the_capabilities_and_special_use_folders() {
    let dovecot = Dovecot::start(&[("alice", "secret")]);
    let mut imap = ImapSetup::login(dovecot.port(), "alice", "secret");
    let capability = imap.ok("CAPABILITY").join(" ");
    for cap in [
        "IMAP4rev1",
        "IDLE",
        "UIDPLUS",
        "CONDSTORE",
        "QRESYNC",
        "SPECIAL-USE",
        "LITERAL+",
        "MOVE",
    ] {
        assert!(
            capability.split_whitespace().any(|c| c == cap),
            "{cap} missing in {capability}"
        );
    }
    let list = imap.list();
    for (flag, name) in [
        ("\\Sent", "Sent"),
        ("\\Drafts", "Drafts"),
        ("\\Trash", "Trash"),
        ("\\Junk", "Junk"),
    ] {
        assert!(
            list.iter()
                .any(|l| l.contains(flag) && l.ends_with(&format!("\"/\" {name}"))),
            "no {name} with {flag} in {list:?}"
        );
    }
    assert!(list.iter().any(|l| l.ends_with(" INBOX")), "{list:?}");
    let subscribed = imap.ok("LSUB \"\" \"*\"").join("\n");
    assert!(subscribed.contains("Sent"), "{subscribed}");
    let enabled = imap.ok("ENABLE QRESYNC");
    assert!(enabled.iter().any(|l| l.contains("QRESYNC")), "{enabled:?}");

    // Non-ASCII folder names travel in modified UTF-7 and land under that name on disk.
    assert_eq!(mutf7_encode("Skräp & Co"), "Skr&AOQ-p &- Co");
    imap.create("Skräp");
    assert!(imap.list().iter().any(|l| l.contains("Skr&AOQ-p")));
    assert!(dovecot.maildir("alice").join(".Skr&AOQ-p").is_dir());
}

#[test]
fn refuses_a_wrong_password_quickly() {
    let dovecot = Dovecot::start(&[("alice", "secret"), ("bob", "hunter2")]);
    let started = Instant::now();
    for _ in 0..3 {
        let err = ImapSetup::try_login(dovecot.port(), "alice", "hunter2")
            .err()
            .expect("wrong password accepted");
        assert!(err.contains("NO") && err.contains("AUTHENTICATIONFAILED"), "{err}");
        assert!(ImapSetup::try_login(dovecot.port(), "mallory", "secret").is_err());
    }
    // Dovecot's growing penalty for failed logins (2 s, 4 s, ... per IP) is off.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    ImapSetup::login(dovecot.port(), "bob", "hunter2").logout();
    ImapSetup::login(dovecot.port(), "alice", "secret").logout();
}

#[test]
fn bump_uidvalidity_changes_it_and_keeps_the_messages() {
    let dovecot = Dovecot::start(&[("alice", "secret")]);
    let mut imap = ImapSetup::login(dovecot.port(), "alice", "secret");
    imap.append("Sent", &message("one"));
    imap.append("Sent", &message("two"));
    let before = imap.status("Sent");
    let inbox_before = imap.uidvalidity("INBOX");
    imap.ok("SELECT Sent");

    let bumped = dovecot.bump_uidvalidity("alice", "Sent");
    assert_ne!(bumped, before.uidvalidity);
    // The session that had Sent selected is told to go away, like on a real server.
    if let Ok(next) = imap.try_command("NOOP") {
        assert!(
            !next.is_ok() || next.untagged.iter().any(|l| l.starts_with("* BYE")),
            "{next:?}"
        );
    }

    let mut imap = ImapSetup::login(dovecot.port(), "alice", "secret");
    let after = imap.status("Sent");
    assert_eq!(after.uidvalidity, bumped);
    assert_eq!((after.messages, after.uidnext), (2, before.uidnext));
    assert_eq!(imap.uidvalidity("INBOX"), inbox_before);
    let select = imap.ok("SELECT Sent").join("\n");
    assert!(select.contains(&format!("[UIDVALIDITY {bumped}]")), "{select}");
    let fetched = imap.ok("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])").join("\n");
    assert!(
        fetched.contains("Subject: one") && fetched.contains("Subject: two"),
        "{fetched}"
    );

    assert_eq!(dovecot.bump_uidvalidity("alice", "INBOX"), inbox_before + 1);
}

#[test]
fn restart_keeps_port_and_mail_and_drops_sessions() {
    let mut dovecot = Dovecot::start(&[("alice", "secret")]);
    let port = dovecot.port();
    let mut imap = ImapSetup::login(port, "alice", "secret");
    imap.append("INBOX", &message("kept"));
    imap.append("Sent", &message("kept too"));
    let uidvalidity = imap.uidvalidity("INBOX");
    imap.ok("SELECT INBOX");
    let old_pids = dovecot.pids();
    assert!(old_pids.len() >= 3, "{old_pids:?}");

    dovecot.restart();
    assert_eq!(dovecot.port(), port);
    for pid in &old_pids {
        assert!(!alive(*pid), "process {pid} of the old server survived the restart");
    }
    // The old session is gone (BYE, then the connection is closed).
    assert!(imap.try_command("NOOP").is_err());

    let mut imap = ImapSetup::login(port, "alice", "secret");
    let inbox = imap.status("INBOX");
    assert_eq!((inbox.messages, inbox.uidvalidity), (1, uidvalidity));
    assert_eq!(imap.status("Sent").messages, 1);
    assert_eq!(imap.append("INBOX", &message("after restart")), 2);

    // stop() then restart() works too, and a stopped server refuses connections.
    dovecot.stop();
    assert!(dovecot.master_pid().is_none() && dovecot.pids().is_empty());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    dovecot.restart();
    assert_eq!(ImapSetup::login(port, "alice", "secret").status("INBOX").messages, 2);
}

#[test]
fn two_instances_do_not_interfere() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Dovecot::start(&[("alice", "password-a")]));
        let b = s.spawn(|| Dovecot::start(&[("alice", "password-b")]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.maildir("alice"), b.maildir("alice"));
    let mut on_a = ImapSetup::login(a.port(), "alice", "password-a");
    let mut on_b = ImapSetup::login(b.port(), "alice", "password-b");
    assert!(ImapSetup::try_login(b.port(), "alice", "password-a").is_err());
    on_a.append("INBOX", &message("only on a"));
    on_a.append("INBOX", &message("also only on a"));
    assert_eq!(on_a.status("INBOX").messages, 2);
    assert_eq!(on_b.status("INBOX").messages, 0);
    drop(a);
    // b survives a's shutdown.
    assert!(on_b.try_command("NOOP").is_ok_and(|r| r.is_ok()));
    assert_eq!(on_b.append("INBOX", &message("on b")), 1);
}

#[test]
fn kill_imap_processes_kills_only_this_instance() {
    let a = Dovecot::start(&[("alice", "secret")]);
    let b = Dovecot::start(&[("alice", "secret")]);
    let mut a1 = ImapSetup::login(a.port(), "alice", "secret");
    let mut a2 = ImapSetup::login(a.port(), "alice", "secret");
    let mut on_b = ImapSetup::login(b.port(), "alice", "secret");
    a1.ok("SELECT INBOX");
    on_b.ok("SELECT INBOX");
    let b_pids = b.pids();

    assert_eq!(a.kill_imap_processes(), 2);
    assert!(a1.try_command("NOOP").is_err());
    assert!(a2.try_command("NOOP").is_err());
    assert!(on_b.try_command("NOOP").is_ok_and(|r| r.is_ok()));
    assert!(b_pids.iter().all(|pid| alive(*pid)));
    // a itself goes on.
    let mut again = ImapSetup::login(a.port(), "alice", "secret");
    assert_eq!(again.append("INBOX", &message("after the crash")), 1);
    assert_eq!(a.kill_imap_processes(), 1);
}

#[test]
fn maildir_messages_written_directly_are_picked_up_in_order() {
    let dovecot = Dovecot::start(&[("alice", "secret")]);
    // Before the user ever logged in: INBOX and Sent are created on disk.
    let n = dovecot.write_maildir_messages("alice", None, (0..2000).map(|i| message(&format!("bulk {i}"))));
    assert_eq!(n, 2000);
    dovecot.write_maildir_messages("alice", Some("Sent"), (0..3).map(|i| message(&format!("sent {i}"))));
    let mut imap = ImapSetup::login(dovecot.port(), "alice", "secret");
    assert_eq!(imap.status("INBOX").messages, 2000);
    assert_eq!(imap.status("Sent").messages, 3);
    let sent = imap
        .list()
        .into_iter()
        .find(|l| l.ends_with(" Sent"))
        .expect("Sent listed");
    assert!(sent.contains("\\Sent"), "{sent}");

    imap.ok("SELECT INBOX");
    for (uid, subject) in [(1, "bulk 0"), (2, "bulk 1"), (1000, "bulk 999"), (2000, "bulk 1999")] {
        let fetched = imap
            .ok(&format!("UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
            .join("\n");
        assert!(
            fetched.contains(&format!("Subject: {subject}\r\n")),
            "UID {uid}: {fetched}"
        );
    }
    // More files while a session has the folder selected: seen at the next NOOP, next UIDs.
    dovecot.write_maildir_messages("alice", Some("INBOX"), [message("late")]);
    let noop = imap.ok("NOOP");
    assert!(noop.iter().any(|l| l == "* 2001 EXISTS"), "{noop:?}");
    let fetched = imap
        .ok("UID FETCH 2001 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .join("\n");
    assert!(fetched.contains("Subject: late"), "{fetched}");
    // Into a folder Dovecot never saw.
    dovecot.write_maildir_messages("alice", Some("Archive/2026"), [message("archived")]);
    assert_eq!(imap.status("Archive/2026").messages, 1);

    // Files belong to rapport-mail, and a peek did not mark anything \Seen.
    use std::os::unix::fs::MetadataExt;
    let cur = dovecot.maildir("alice").join("cur");
    let file = std::fs::read_dir(&cur).unwrap().next().unwrap().unwrap();
    assert_ne!(file.metadata().unwrap().uid(), 0);
    assert!(!dovecot.log().contains("flag_change"));
}

#[test]
fn idle_sees_new_mail() {
    let dovecot = Dovecot::start(&[("alice", "secret")]);
    let mut idler = ImapSetup::login(dovecot.port(), "alice", "secret");
    idler.ok("SELECT INBOX");
    let port = dovecot.port();
    let appender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut imap = ImapSetup::login(port, "alice", "secret");
        imap.append("INBOX", &message("while idling"));
        imap.logout();
    });
    assert!(idler.idle_until("* 1 EXISTS", Duration::from_secs(10)));
    appender.join().unwrap();
}

#[test]
fn log_counts_fetch_commands() {
    let dovecot = Dovecot::start(&[("alice", "secret"), ("bob", "secret")]);
    let mut imap = ImapSetup::login(dovecot.port(), "alice", "secret");
    imap.append("INBOX", &message("a"));
    imap.ok("SELECT INBOX");
    imap.ok("UID FETCH 1:* (FLAGS)");
    imap.ok("UID FETCH 1 (BODY.PEEK[])");
    imap.ok("FETCH 1 (UID)");
    let mut bob = ImapSetup::login(dovecot.port(), "bob", "secret");
    bob.ok("SELECT INBOX");
    bob.ok("UID FETCH 1:* (FLAGS)");

    assert_eq!(dovecot.count_commands("alice", "FETCH"), 3);
    assert_eq!(dovecot.count_commands("bob", "fetch"), 1);
    assert_eq!(dovecot.count_commands("alice", "SELECT"), 1);
    let commands = dovecot.imap_commands();
    let peek = commands
        .iter()
        .find(|c| c.args.contains("BODY.PEEK[]"))
        .expect("logged");
    assert!(peek.uid && peek.name == "FETCH" && peek.user == "alice", "{peek:?}");
}

#[test]
fn drop_leaves_no_process_behind() {
    let dovecot = Dovecot::start(&[("alice", "secret")]);
    let mut imap = ImapSetup::login(dovecot.port(), "alice", "secret");
    imap.ok("SELECT INBOX");
    let pids = dovecot.pids();
    let dir = dovecot.dir().to_path_buf();
    // master, log, config, anvil, imap-login or auth, and the session.
    assert!(pids.len() >= 5, "{pids:?}");
    drop(dovecot);
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived");
    }
    assert!(!dir.exists());
    assert!(imap.try_command("NOOP").is_err());
}
