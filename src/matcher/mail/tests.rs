use super::*;

fn rules() -> DomainRules {
    DomainRules::new(&["example.com".into()], &["rival.example".into()], &[])
}

fn index() -> LeadIndex {
    LeadIndex::new(
        [
            ("sara@acme.example".to_string(), 1),
            ("tom@gmail.com".to_string(), 2),
            ("gone@acme.example".to_string(), 3),
        ],
        [("acme.example".to_string(), 10)],
    )
}

fn alice() -> Vec<String> {
    vec!["alice@example.com".into(), "a.andersson@example.com".into()]
}

fn headers(from: &str, to: &[&str]) -> MailHeaders {
    MailHeaders {
        message_id: Some("m@x".into()),
        from: vec![from.into()],
        to: to.iter().map(|s| s.to_string()).collect(),
        subject: Some("Hello".into()),
        ..Default::default()
    }
}

fn decide_with(unknown: UnknownSenders, h: &MailHeaders, outbound: &[&str]) -> MailDecision {
    let (r, i) = (rules(), index());
    let m = MailMatcher {
        domains: &r,
        index: &i,
        strip_plus_tags: true,
        unknown_senders: unknown,
    };
    let addrs = alice();
    let rep = RepView {
        id: "alice",
        addresses: &addrs,
    };
    m.decide(&rep, h, &|id| outbound.contains(&id))
}

fn decide(h: &MailHeaders) -> MailDecision {
    decide_with(UnknownSenders::Ignore, h, &["sent-1@example.com"])
}

fn kind(d: &MailDecision) -> Option<ActivityKind> {
    match d {
        MailDecision::Count { kind, .. } => Some(*kind),
        MailDecision::Skip(_) => None,
    }
}

#[test]
fn outbound_to_a_lead_is_email_sent() {
    let d = decide(&headers("alice@example.com", &["sara@acme.example"]));
    assert_eq!(kind(&d), Some(ActivityKind::EmailSent));
    let MailDecision::Count { leads, direction, .. } = d else {
        unreachable!()
    };
    assert_eq!(direction, Direction::Outbound);
    assert_eq!(
        leads,
        [LeadMatch::Known {
            id: 1,
            address: "sara@acme.example".into()
        }]
    );
}

#[test]
fn alias_counts_as_the_rep() {
    let d = decide(&headers("a.andersson@example.com", &["sara@acme.example"]));
    assert_eq!(kind(&d), Some(ActivityKind::EmailSent));
}

#[test]
fn exact_address_then_company_domain() {
    let d = decide(&headers(
        "alice@example.com",
        &["new.person@acme.example", "sara@acme.example"],
    ));
    let MailDecision::Count { leads, .. } = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        leads,
        [
            LeadMatch::AtCompany {
                address: "new.person@acme.example".into(),
                company_id: 10
            },
            LeadMatch::Known {
                id: 1,
                address: "sara@acme.example".into()
            }
        ]
    );
}

#[test]
fn free_mail_matches_only_exactly() {
    assert_eq!(
        kind(&decide(&headers("alice@example.com", &["tom@gmail.com"]))),
        Some(ActivityKind::EmailSent)
    );
    let d = decide(&headers("alice@example.com", &["stranger@gmail.com"]));
    assert!(matches!(d, MailDecision::Skip(SkipReason::NoLead(_))), "{d:?}");
}

#[test]
fn internal_and_blocked_domains_never_match() {
    let d = decide(&headers("alice@example.com", &["bob@example.com", "x@eu.example.com"]));
    assert_eq!(d, MailDecision::Skip(SkipReason::InternalOnly));
    let d = decide(&headers("alice@example.com", &["ceo@rival.example"]));
    assert!(matches!(d, MailDecision::Skip(SkipReason::NoLead(_))));
    let d = decide(&headers(
        "dave@example.com",
        &["alice@example.com", "sara@acme.example"],
    ));
    assert!(matches!(d, MailDecision::Skip(SkipReason::FromColleague(_))));
}

#[test]
fn plus_tags_are_stripped() {
    let d = decide(&headers("sara+news@acme.example", &["alice@example.com"]));
    let MailDecision::Count { leads, .. } = d else {
        panic!("{d:?}")
    };
    assert_eq!(
        leads[0],
        LeadMatch::Known {
            id: 1,
            address: "sara@acme.example".into()
        }
    );
}

#[test]
fn inbound_reply_vs_new_mail() {
    let mut h = headers("sara@acme.example", &["alice@example.com"]);
    assert_eq!(kind(&decide(&h)), Some(ActivityKind::EmailReceived));
    h.in_reply_to = vec!["sent-1@example.com".into()];
    let d = decide(&h);
    assert_eq!(kind(&d), Some(ActivityKind::ReplyReceived));
    assert!(d.explain().contains("answers <sent-1@example.com>"), "{}", d.explain());
    // A reply to something this rep never sent is just received mail.
    h.in_reply_to = vec!["someone-else@acme.example".into()];
    assert_eq!(kind(&decide(&h)), Some(ActivityKind::EmailReceived));
    // References alone are enough.
    h.references = vec!["root@acme.example".into(), "sent-1@example.com".into()];
    assert_eq!(kind(&decide(&h)), Some(ActivityKind::ReplyReceived));
}

#[test]
fn auto_replies_bounces_and_bulk() {
    let mut h = headers("sara@acme.example", &["alice@example.com"]);
    h.subject = Some("Automatic reply: Proposal".into());
    assert_eq!(kind(&decide(&h)), Some(ActivityKind::AutoReply));

    let mut bulk = headers("news@acme.example", &["alice@example.com"]);
    bulk.has_list_id = true;
    assert!(matches!(decide(&bulk), MailDecision::Skip(SkipReason::Bulk(_))));
    let mut prec = headers("sara@acme.example", &["alice@example.com"]);
    prec.precedence = Some("bulk".into());
    assert!(matches!(decide(&prec), MailDecision::Skip(SkipReason::Bulk(_))));
    let noreply = headers("noreply@acme.example", &["alice@example.com"]);
    assert!(matches!(decide(&noreply), MailDecision::Skip(SkipReason::Automated(_))));

    let mut dsn = headers("mailer-daemon@mx.acme.example", &["alice@example.com"]);
    dsn.is_delivery_report = true;
    dsn.failed_recipients = vec!["gone@acme.example".into()];
    let d = decide(&dsn);
    let MailDecision::Count { kind, bounced, .. } = &d else {
        panic!("{d:?}")
    };
    assert_eq!(*kind, ActivityKind::Bounce);
    assert_eq!(bounced, &["gone@acme.example".to_string()]);
    dsn.failed_recipients = vec!["nobody@elsewhere.example".into()];
    assert_eq!(decide(&dsn), MailDecision::Skip(SkipReason::BounceForNoLead));

    let mut own_ooo = headers("alice@example.com", &["sara@acme.example"]);
    own_ooo.auto_submitted = Some("auto-replied".into());
    assert_eq!(decide(&own_ooo), MailDecision::Skip(SkipReason::OwnAutoReply));
}

#[test]
fn unknown_senders_by_config() {
    let h = headers("stranger@newco.example", &["alice@example.com"]);
    assert!(matches!(decide(&h), MailDecision::Skip(SkipReason::NoLead(_))));
    let d = decide_with(UnknownSenders::CreateLead, &h, &[]);
    let MailDecision::Count { leads, .. } = &d else {
        panic!("{d:?}")
    };
    assert_eq!(
        leads[0],
        LeadMatch::Unknown {
            address: "stranger@newco.example".into()
        }
    );
    // Machines are never made leads.
    let bot = headers("noreply@newco.example", &["alice@example.com"]);
    assert!(matches!(
        decide_with(UnknownSenders::CreateLead, &bot, &[]),
        MailDecision::Skip(_)
    ));
}

#[test]
fn bounces_from_the_companys_own_server_count() {
    let mut dsn = headers("mailer-daemon@mail.example.com", &["alice@example.com"]);
    dsn.is_delivery_report = true;
    dsn.failed_recipients = vec!["gone@acme.example".into()];
    assert_eq!(kind(&decide(&dsn)), Some(ActivityKind::Bounce));
}

#[test]
fn vacation_replies_with_precedence_bulk_are_auto_replies() {
    let mut h = headers("sara@acme.example", &["alice@example.com"]);
    h.auto_submitted = Some("auto-replied".into());
    h.precedence = Some("bulk".into());
    assert_eq!(kind(&decide(&h)), Some(ActivityKind::AutoReply));
}

#[test]
fn drafts_are_never_counted() {
    let mut h = headers("alice@example.com", &["sara@acme.example"]);
    h.draft = true;
    assert_eq!(decide(&h), MailDecision::Skip(SkipReason::Draft));
}

#[test]
fn no_sender_is_skipped() {
    let h = MailHeaders::default();
    assert_eq!(decide(&h), MailDecision::Skip(SkipReason::NoSender));
}

#[test]
fn inbound_links_copied_leads_too() {
    let mut h = headers("sara@acme.example", &["alice@example.com"]);
    h.cc = vec!["new.person@acme.example".into(), "bob@example.com".into()];
    let MailDecision::Count { leads, .. } = decide(&h) else {
        panic!()
    };
    assert_eq!(leads.len(), 2);
    assert_eq!(leads[1].address(), "new.person@acme.example");
}

#[test]
fn explanations_name_kind_leads_answer_and_signal() {
    let d = MailDecision::Count {
        kind: ActivityKind::ReplyReceived,
        direction: Direction::Inbound,
        leads: vec![
            LeadMatch::Known {
                id: 1,
                address: "sara@acme.example".into(),
            },
            LeadMatch::AtCompany {
                address: "new@acme.example".into(),
                company_id: 10,
            },
            LeadMatch::Unknown {
                address: "x@y.example".into(),
            },
        ],
        answers: Some("sent-1@example.com".into()),
        auto_reply: Some(AutoReplySignal::VendorHeader),
        bounced: Vec::new(),
    };
    assert_eq!(
        d.explain(),
        "counted as reply_received for sara@acme.example (lead), new@acme.example (new lead, company \
         matched by domain), x@y.example (new lead, unknown sender); answers <sent-1@example.com>; \
         auto-reply because of VendorHeader"
    );
    assert_eq!(
        MailDecision::Skip(SkipReason::Bulk("List-Id")).explain(),
        "not counted: bulk or list mail (List-Id)"
    );
}

/// `has_unlinked_participant` as decided for `h` (which must count).
fn unlinked(h: &MailHeaders) -> bool {
    let (r, i) = (rules(), index());
    let m = MailMatcher {
        domains: &r,
        index: &i,
        strip_plus_tags: true,
        unknown_senders: UnknownSenders::Ignore,
    };
    let addrs = alice();
    let rep = RepView {
        id: "alice",
        addresses: &addrs,
    };
    let MailDecision::Count { leads, .. } = m.decide(&rep, h, &|_| false) else {
        panic!("{h:?} does not count")
    };
    m.has_unlinked_participant(&rep, h, &leads)
}

#[test]
fn a_participant_outside_the_company_and_not_a_lead_is_unlinked() {
    // Every outside participant is a lead: nothing a later match could add.
    assert!(!unlinked(&headers("alice@example.com", &["sara@acme.example"])));
    assert!(!unlinked(&headers("sara+news@acme.example", &["alice@example.com"])));
    assert!(!unlinked(&headers(
        "a.andersson@example.com",
        &["sara@acme.example", "bob@example.com"]
    )));
    // Someone at a free-mail domain (not a lead under `ignore`), or at a blocked domain (an
    // exact lead import would still match), is not linked yet.
    assert!(unlinked(&headers(
        "sara@acme.example",
        &["alice@example.com", "joe@gmail.com"]
    )));
    let mut h = headers("alice@example.com", &["sara@acme.example"]);
    h.cc = vec!["spy@rival.example".into()];
    assert!(unlinked(&h));
}
