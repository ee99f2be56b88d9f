//! Matching with 1,000,000 leads loaded: index build time and memory, and decisions per
//! second, next to a baseline measured in the same run: a bare hash-map lookup of the same
//! sender addresses (the least any matcher must do). Run with `scripts/bench matching`.

use std::collections::HashMap;
use std::time::Instant;

use rapport::config::UnknownSenders;
use rapport::matcher::{DomainRules, LeadIndex, MailDecision, MailMatcher, RepView};
use rapport::sources::mail::MailHeaders;

const LEADS: usize = 1_000_000;
const COMPANIES: usize = 20_000;
const MESSAGES: usize = 500_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let before = rss_kib();
    let start = Instant::now();
    let index = LeadIndex::new(
        (0..LEADS).map(|i| (format!("lead{i}@company{}.example", i % COMPANIES), i as i64)),
        (0..COMPANIES).map(|c| (format!("company{c}.example"), c as i64)),
    );
    let build = start.elapsed();
    let grown = rss_kib().saturating_sub(before);
    println!(
        "index of {LEADS} leads and {COMPANIES} companies: built in {build:.2?}, {} MiB resident",
        grown / 1024
    );

    // Inbound mail: 60% from leads, 20% from new people at known companies, 10% free-mail
    // strangers, 10% colleagues.
    let senders: Vec<String> = (0..MESSAGES)
        .map(|i| match i % 10 {
            0..=5 => format!(
                "lead{}@company{}.example",
                (i * 7919) % LEADS,
                ((i * 7919) % LEADS) % COMPANIES
            ),
            6 | 7 => format!("someone{i}@company{}.example", i % COMPANIES),
            8 => format!("stranger{i}@gmail.com"),
            _ => "dave@example.com".to_string(),
        })
        .collect();
    let headers: Vec<MailHeaders> = senders
        .iter()
        .enumerate()
        .map(|(i, s)| MailHeaders {
            message_id: Some(format!("m{i}@x")),
            from: vec![s.clone()],
            to: vec!["alice@example.com".into()],
            subject: Some("Hello".into()),
            ..Default::default()
        })
        .collect();

    // Baseline: look every sender up in a plain map.
    let plain: HashMap<String, i64> = (0..LEADS)
        .map(|i| (format!("lead{i}@company{}.example", i % COMPANIES), i as i64))
        .collect();
    let start = Instant::now();
    let mut hits = 0usize;
    for s in &senders {
        hits += usize::from(plain.contains_key(s.as_str()));
    }
    let baseline = MESSAGES as f64 / start.elapsed().as_secs_f64();
    drop(plain);

    let rules = DomainRules::new(&["example.com".into()], &[], &[]);
    let m = MailMatcher {
        domains: &rules,
        index: &index,
        strip_plus_tags: true,
        unknown_senders: UnknownSenders::Ignore,
    };
    let addrs = vec!["alice@example.com".to_string()];
    let rep = RepView {
        id: "alice",
        addresses: &addrs,
    };
    let start = Instant::now();
    let mut counted = 0usize;
    for h in &headers {
        if let MailDecision::Count { .. } = m.decide(&rep, h, &|_| false) {
            counted += 1;
        }
    }
    let rate = MESSAGES as f64 / start.elapsed().as_secs_f64();
    assert_eq!(hits, MESSAGES * 6 / 10);
    assert_eq!(counted, MESSAGES * 8 / 10);
    println!("\n| what | rate | ratio to baseline |\n|---|---|---|");
    println!("| hash-map lookup of the sender (baseline) | {baseline:.0} msgs/s | 1.00 |");
    println!(
        "| rapport matcher decision | {rate:.0} msgs/s | {:.2} |",
        rate / baseline
    );
}
