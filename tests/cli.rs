//! The `rapport` binary end to end: check, migrate, leads import/list, status.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rapport(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rapport"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RAPPORT_LOG", "warn")
        .output()
        .expect("run rapport")
}

fn text_of(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn check_accepts_the_shipped_configs_silently() {
    for cfg in ["config/rapport.example.yaml", "config/example.yaml"] {
        let o = rapport(&repo(cfg), &["check"]);
        let (out, err) = text_of(&o);
        assert!(o.status.success(), "{cfg}: {out}{err}");
        assert_eq!(out, "", "{cfg}");
        assert_eq!(err, "", "{cfg}");
    }
}

#[test]
fn check_lists_three_mistakes_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "internal_domains: [example.com]\n\
         databse:\n\
         \x20 url: sqlite://x.db\n\
         reps:\n\
         \x20 - id: alice\n\
         \x20   name: Alice\n\
         \x20   email: alice@@example.com\n\
         \x20   time_zone: Mars/Olympus\n",
    )
    .unwrap();
    let o = rapport(&cfg, &["check"]);
    let (_, err) = text_of(&o);
    assert!(!o.status.success());
    let path = cfg.display().to_string();
    let located: Vec<&str> = err.lines().filter(|l| l.starts_with(&path)).collect();
    assert_eq!(located.len(), 3, "{err}");
    assert!(
        err.contains(&format!("{path}:2:1: error: unknown key `databse`")),
        "{err}"
    );
    assert!(err.contains("did you mean `database`?"), "{err}");
    assert!(
        err.contains(&format!("{path}:7:12: error: invalid email address")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:8:16: error: unknown time zone `Mars/Olympus`")),
        "{err}"
    );
    assert!(err.contains("3 errors found"), "{err}");
}

#[test]
fn run_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "internal_domains: [example.com]\nreps: 3\n").unwrap();
    let o = rapport(&cfg, &["run", "--once"]);
    let (_, err) = text_of(&o);
    assert!(!o.status.success());
    assert!(err.contains("`reps` must be a list"), "{err}");
    assert!(err.contains("nothing was started"), "{err}");
}

#[test]
fn help_explains_each_command() {
    let o = Command::new(env!("CARGO_BIN_EXE_rapport"))
        .arg("--help")
        .output()
        .unwrap();
    let (out, _) = text_of(&o);
    for cmd in ["run", "check", "migrate", "leads", "status"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(cmd) && l.len() > cmd.len() + 10),
            "{cmd}: {out}"
        );
    }
}

/// Writes a CSV of `n` valid leads plus the given bad rows at the end.
fn write_csv(path: &Path, n: usize, bad_rows: &[&str]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "email,first_name,last_name,company,owner,industry").unwrap();
    for i in 0..n {
        let owner = if i % 2 == 0 { "alice" } else { "bob" };
        writeln!(
            f,
            "lead{i}@company{}.example,First{i},Last{i},Company {},{owner},industry{}",
            i % 500,
            i % 500,
            i % 7
        )
        .unwrap();
    }
    for r in bad_rows {
        writeln!(f, "{r}").unwrap();
    }
}

fn import_twice(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rapport.yaml");
    std::fs::write(&cfg, common::config_yaml(database_url, "")).unwrap();
    let csv = dir.path().join("leads.csv");
    let n = 100_000;
    write_csv(
        &csv,
        n,
        &[
            "not-an-address,X,Y,Z,alice,a",
            "lead5@company5.example,Dup,Dup,C,alice,a",
            "short@acme.example,A",
        ],
    );

    let o = rapport(&cfg, &["migrate"]);
    assert!(o.status.success(), "{:?}", text_of(&o));

    let o = rapport(&cfg, &["leads", "import", csv.to_str().unwrap()]);
    let (out, err) = text_of(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains(&format!("{n} inserted, 0 updated, 0 unchanged, 3 rejected")),
        "{out}"
    );
    let bad_row = n + 2;
    assert!(err.contains(&format!("row {bad_row}: bad address")), "{err}");
    assert!(
        err.contains(&format!("row {}: duplicate in file", bad_row + 1)),
        "{err}"
    );
    assert!(err.contains(&format!("row {}: missing column", bad_row + 2)), "{err}");

    let o = rapport(&cfg, &["leads", "import", csv.to_str().unwrap()]);
    let (out, _) = text_of(&o);
    assert!(
        out.contains(&format!("0 inserted, 0 updated, {n} unchanged, 3 rejected")),
        "{out}"
    );

    let o = rapport(&cfg, &["status"]);
    let (out, err) = text_of(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains(&format!("leads:      {n}")), "{out}");
    assert!(out.contains("companies:  500"), "{out}");

    let o = rapport(&cfg, &["leads", "list", "--limit", "2"]);
    let (out, _) = text_of(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[1].starts_with("lead0@company0.example"), "{out}");
    assert!(
        lines[1].contains("First0 Last0") && lines[1].contains("Company 0"),
        "{out}"
    );
}

#[test]
fn import_100k_twice_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    import_twice(&format!("sqlite://{}", dir.path().join("r.db").display()));
}

#[tokio::test]
async fn import_100k_twice_on_postgres() {
    let url = common::pg_schema_url().await;
    tokio::task::spawn_blocking(move || import_twice(&url)).await.unwrap();
}

/// The README's main job, on a copy of the example config pointing at a temp database.
#[test]
fn main_job_explain_and_verify_on_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let example = repo("config/example");
    let text = std::fs::read_to_string(repo("config/example.yaml"))
        .unwrap()
        .replace(
            "sqlite://rapport-example.db",
            &format!("sqlite://{}", dir.path().join("r.db").display()),
        )
        .replace("example/", &format!("{}/", example.display()));
    let cfg = dir.path().join("example.yaml");
    std::fs::write(&cfg, text).unwrap();

    let o = rapport(&cfg, &["run", "--once"]);
    let (out, err) = text_of(&o);
    assert!(o.status.success(), "{out}{err}");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("config/example/expected.json")).unwrap()).unwrap();
    let alice = out
        .lines()
        .find(|l| l.starts_with("alice"))
        .unwrap_or_else(|| panic!("{out}"));
    let total: i64 = expected["per_rep"]["alice"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert!(alice.trim_end().ends_with(&total.to_string()), "{out}");
    // Every kind has its column, meetings from the bundled calendars included.
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert!(
        header.contains(&"meeting_booked") && header.contains(&"meeting_held"),
        "{out}"
    );
    // The summary table ends at the first empty line; progress toward targets follows it.
    for line in out.lines().skip(1).take_while(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        for (kind, n) in expected["per_rep"][cells[0]].as_object().unwrap() {
            let col = header.iter().position(|h| h == kind).unwrap();
            assert_eq!(
                cells[col],
                n.as_i64().unwrap().to_string(),
                "{} {kind}: {out}",
                cells[0]
            );
        }
    }

    let reply = expected["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["expected"] == "reply_received" && m["rep"] == "bob")
        .unwrap();
    let id = reply["message_id"].as_str().unwrap();
    let o = rapport(&cfg, &["explain", id]);
    let (out, _) = text_of(&o);
    assert!(o.status.success());
    assert!(
        out.contains("bob-mail / INBOX") && out.contains("counted as reply_received"),
        "{out}"
    );
    assert!(out.contains("answers <"), "{out}");

    let o = rapport(&cfg, &["verify"]);
    let (out, _) = text_of(&o);
    assert!(o.status.success(), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("0 missed")).count(), 6, "{out}");
}
