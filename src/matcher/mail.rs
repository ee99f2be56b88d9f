//! Deciding what a message is to a rep: which way it went, which leads it concerns, and
//! which kind of activity (if any) it is. Pure: everything it needs is passed in.

use std::fmt;

use super::auto_reply::{AutoReplySignal, auto_reply_signal};
use super::{DomainClass, DomainRules, LeadIndex};
use crate::activity::{ActivityKind, Direction};
use crate::address;
use crate::config::UnknownSenders;
use crate::sources::mail::MailHeaders;

/// The rules and data a decision is made against.
pub struct MailMatcher<'a> {
    pub domains: &'a DomainRules,
    pub index: &'a LeadIndex,
    pub strip_plus_tags: bool,
    pub unknown_senders: UnknownSenders,
}

/// The rep whose mailbox holds the message.
pub struct RepView<'a> {
    pub id: &'a str,
    /// Primary address and aliases, normalized.
    pub addresses: &'a [String],
}

/// A lead a message concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadMatch {
    /// Matched by exact address.
    Known { id: i64, address: String },
    /// A new person at a known company (matched by domain), to be created.
    AtCompany { address: String, company_id: i64 },
    /// An unknown sender created as a lead because `unknown_senders: create_lead`.
    Unknown { address: String },
}

impl LeadMatch {
    pub fn address(&self) -> &str {
        match self {
            LeadMatch::Known { address, .. }
            | LeadMatch::AtCompany { address, .. }
            | LeadMatch::Unknown { address } => address,
        }
    }
}

/// Why a message is not a sales activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    NoSender,
    /// Every participant is inside the company.
    InternalOnly,
    /// Sent by a colleague, not by this rep.
    FromColleague(String),
    /// Mailing list or bulk mail.
    Bulk(&'static str),
    /// Sent by a machine (noreply@ and friends).
    Automated(String),
    /// The rep's own automatic reply.
    OwnAutoReply,
    /// A bounce that names no lead.
    BounceForNoLead,
    /// No external participant is a lead or works at a known company.
    NoLead(Vec<String>),
    /// A draft: never sent.
    Draft,
    /// A participant is on a privacy exclusion list: nothing about it is kept.
    Excluded,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoSender => write!(f, "the message has no usable From address"),
            SkipReason::InternalOnly => write!(f, "internal mail: every participant is in an internal domain"),
            SkipReason::FromColleague(a) => write!(f, "sent by colleague {a}, not by this rep"),
            SkipReason::Bulk(why) => write!(f, "bulk or list mail ({why})"),
            SkipReason::Automated(a) => write!(f, "automated sender {a}"),
            SkipReason::OwnAutoReply => write!(f, "the rep's own automatic reply"),
            SkipReason::BounceForNoLead => write!(f, "a bounce that names no lead"),
            SkipReason::Excluded => write!(f, "a participant is excluded by the privacy rules"),
            SkipReason::Draft => write!(f, "a draft (flagged \\Draft), never sent"),
            SkipReason::NoLead(addrs) => write!(
                f,
                "no lead: {} matched no lead and no known company (free-mail, blocked or unknown domain)",
                addrs.join(", ")
            ),
        }
    }
}

/// What a message is to the rep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailDecision {
    Count {
        kind: ActivityKind,
        direction: Direction,
        leads: Vec<LeadMatch>,
        /// For replies: the earlier outbound message it answers.
        answers: Option<String>,
        /// For auto-replies: what gave it away.
        auto_reply: Option<AutoReplySignal>,
        /// For bounces: the lead addresses that bounced.
        bounced: Vec<String>,
    },
    Skip(SkipReason),
}

impl MailDecision {
    /// One line for `rapport explain` and the `mail_seen` table.
    pub fn explain(&self) -> String {
        use fmt::Write as _;
        // Built piece by piece: one is written for every message seen (`mail_seen.reason`).
        let mut s = String::with_capacity(96);
        match self {
            MailDecision::Skip(r) => {
                let _ = write!(s, "not counted: {r}");
            }
            MailDecision::Count {
                kind,
                leads,
                answers,
                auto_reply,
                ..
            } => {
                s.push_str("counted as ");
                s.push_str(kind.as_str());
                s.push_str(" for ");
                for (i, l) in leads.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    let (address, what) = match l {
                        LeadMatch::Known { address, .. } => (address, " (lead)"),
                        LeadMatch::AtCompany { address, .. } => (address, " (new lead, company matched by domain)"),
                        LeadMatch::Unknown { address } => (address, " (new lead, unknown sender)"),
                    };
                    s.push_str(address);
                    s.push_str(what);
                }
                if let Some(a) = answers {
                    s.push_str("; answers <");
                    s.push_str(a);
                    s.push('>');
                }
                if let Some(sig) = auto_reply {
                    let _ = write!(s, "; auto-reply because of {sig:?}");
                }
            }
        }
        s
    }
}

const AUTOMATED_LOCAL_PARTS: &[&str] = &[
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "notifications",
    "notification",
    "mailer-daemon",
    "postmaster",
    "bounce",
    "bounces",
];

fn is_automated_sender(addr: &str) -> bool {
    let local = addr.split('@').next().unwrap_or("");
    AUTOMATED_LOCAL_PARTS.contains(&local) || local.starts_with("bounce+") || local.starts_with("bounces+")
}

impl MailMatcher<'_> {
    fn key(&self, addr: &str) -> String {
        if self.strip_plus_tags {
            address::strip_plus_tag(addr)
        } else {
            addr.to_owned()
        }
    }

    /// Matches one external address to a lead, if it can be.
    pub fn match_address(&self, addr: &str) -> Option<LeadMatch> {
        let key = self.key(addr);
        if let Some(id) = self.index.lead(&key).or_else(|| self.index.lead(addr)) {
            return Some(LeadMatch::Known { id, address: key });
        }
        match self.domains.classify(address::domain_of(&key)) {
            DomainClass::Internal | DomainClass::Blocked => None,
            DomainClass::Company => match self.index.company(address::domain_of(&key)) {
                Some(company_id) => Some(LeadMatch::AtCompany {
                    address: key,
                    company_id,
                }),
                None => self.unknown(key),
            },
            DomainClass::FreeMail => self.unknown(key),
        }
    }

    fn unknown(&self, key: String) -> Option<LeadMatch> {
        match self.unknown_senders {
            UnknownSenders::CreateLead if !is_automated_sender(&key) => Some(LeadMatch::Unknown { address: key }),
            _ => None,
        }
    }

    fn is_internal(&self, addr: &str) -> bool {
        self.domains.classify(address::domain_of(addr)) == DomainClass::Internal
    }

    /// Whether a participant of `h` outside the company (not `rep`, not in an internal domain)
    /// is none of `leads`: a lead imported later may be that person, so the message's header
    /// fields are worth keeping for matching again. A message whose every outside participant
    /// is one of its leads has nothing left to link.
    pub fn has_unlinked_participant(&self, rep: &RepView<'_>, h: &MailHeaders, leads: &[LeadMatch]) -> bool {
        h.from.iter().map(String::as_str).chain(h.recipients()).any(|a| {
            if self.is_internal(a) || rep.addresses.iter().any(|r| r == a) {
                return false;
            }
            // Most often the address is a lead's as written: no key to build.
            if leads.iter().any(|l| l.address() == a) {
                return false;
            }
            let key = self.key(a);
            !rep.addresses.contains(&key) && !leads.iter().any(|l| l.address() == key)
        })
    }

    /// Decides what `h`, found in `rep`'s mailbox, is. `is_outbound` tells whether a
    /// Message-ID belongs to an outbound message of this rep already logged.
    pub fn decide(&self, rep: &RepView<'_>, h: &MailHeaders, is_outbound: &dyn Fn(&str) -> bool) -> MailDecision {
        if h.draft {
            return MailDecision::Skip(SkipReason::Draft);
        }
        let Some(sender) = h.sender() else {
            return MailDecision::Skip(SkipReason::NoSender);
        };
        let sender_key = self.key(sender);
        let rep_sent = rep.addresses.iter().any(|a| *a == sender || *a == sender_key);

        if rep_sent {
            if auto_reply_signal(h).is_some() {
                return MailDecision::Skip(SkipReason::OwnAutoReply);
            }
            let external: Vec<&str> = h.recipients().filter(|a| !self.is_internal(a)).collect();
            if external.is_empty() {
                return MailDecision::Skip(SkipReason::InternalOnly);
            }
            let mut leads: Vec<LeadMatch> = Vec::new();
            for a in &external {
                if let Some(m) = self.match_address(a)
                    && !leads.iter().any(|l| l.address() == m.address())
                {
                    leads.push(m);
                }
            }
            if leads.is_empty() {
                return MailDecision::Skip(SkipReason::NoLead(external.iter().map(|a| a.to_string()).collect()));
            }
            return MailDecision::Count {
                kind: ActivityKind::EmailSent,
                direction: Direction::Outbound,
                leads,
                answers: None,
                auto_reply: None,
                bounced: Vec::new(),
            };
        }

        // Bounces come from machines (the company's own mail server too), so they are checked
        // before the colleague and automated-sender rules.
        if h.is_delivery_report || !h.failed_recipients.is_empty() {
            let mut leads = Vec::new();
            let mut bounced = Vec::new();
            for a in &h.failed_recipients {
                let key = self.key(a);
                if let Some(id) = self.index.lead(&key) {
                    leads.push(LeadMatch::Known {
                        id,
                        address: key.clone(),
                    });
                    bounced.push(key);
                }
            }
            if leads.is_empty() {
                return MailDecision::Skip(SkipReason::BounceForNoLead);
            }
            return MailDecision::Count {
                kind: ActivityKind::Bounce,
                direction: Direction::Inbound,
                leads,
                answers: None,
                auto_reply: None,
                bounced,
            };
        }

        if self.is_internal(sender) {
            return MailDecision::Skip(SkipReason::FromColleague(sender.to_owned()));
        }
        if h.has_list_id {
            return MailDecision::Skip(SkipReason::Bulk("List-Id header"));
        }
        if is_automated_sender(&sender_key) {
            return MailDecision::Skip(SkipReason::Automated(sender_key));
        }

        let Some(lead) = self.match_address(sender) else {
            return MailDecision::Skip(SkipReason::NoLead(vec![sender_key]));
        };
        // The sender decides whether it counts; leads copied on it are part of the conversation.
        let mut leads = vec![lead];
        for a in h.to.iter().chain(&h.cc) {
            if rep.addresses.contains(a) || self.is_internal(a) {
                continue;
            }
            if let Some(m) = self.match_address(a)
                && !leads.iter().any(|l| l.address() == m.address())
            {
                leads.push(m);
            }
        }
        if let Some(signal) = auto_reply_signal(h) {
            return MailDecision::Count {
                kind: ActivityKind::AutoReply,
                direction: Direction::Inbound,
                leads,
                answers: None,
                auto_reply: Some(signal),
                bounced: Vec::new(),
            };
        }
        // After the auto-reply check: vacation responders send `Precedence: bulk` too.
        if let Some(p) = h.precedence.as_deref()
            && matches!(p, "bulk" | "list" | "junk")
        {
            return MailDecision::Skip(SkipReason::Bulk("Precedence header"));
        }
        let answers = h
            .in_reply_to
            .iter()
            .chain(h.references.iter().rev())
            .find(|id| is_outbound(id))
            .cloned();
        MailDecision::Count {
            kind: if answers.is_some() {
                ActivityKind::ReplyReceived
            } else {
                ActivityKind::EmailReceived
            },
            direction: Direction::Inbound,
            leads,
            answers,
            auto_reply: None,
            bounced: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
