//! What a mail domain is to the company: its own, a free-mail provider, blocked, or a
//! prospect's company.

use foldhash::HashSet;

use crate::address::domain_within;
use crate::config::Config;

const BUILT_IN_FREE_MAIL: &str = include_str!("free_mail.txt");

/// How a domain is treated when matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainClass {
    /// The company's own domain: colleagues, never leads.
    Internal,
    /// A consumer mail provider: match by exact address only.
    FreeMail,
    /// Configured never to match.
    Blocked,
    /// Anything else: can be matched to a company by domain.
    Company,
}

/// The domain rules of a configuration.
#[derive(Debug, Clone)]
pub struct DomainRules {
    internal: Vec<String>,
    blocked: Vec<String>,
    free_mail: HashSet<String>,
}

impl DomainRules {
    pub fn new(internal: &[String], blocked: &[String], extra_free_mail: &[String]) -> Self {
        let free_mail = BUILT_IN_FREE_MAIL
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .chain(extra_free_mail.iter().cloned())
            .collect();
        DomainRules {
            internal: internal.to_vec(),
            blocked: blocked.to_vec(),
            free_mail,
        }
    }

    pub fn from_config(c: &Config) -> Self {
        DomainRules::new(
            &c.internal_domains,
            &c.matching.blocked_domains,
            &c.matching.extra_free_mail_domains,
        )
    }

    /// Classifies a lower-case domain. Internal wins over everything, then blocked, then free-mail.
    pub fn classify(&self, domain: &str) -> DomainClass {
        if self.internal.iter().any(|d| domain_within(domain, d)) {
            DomainClass::Internal
        } else if self.blocked.iter().any(|d| domain_within(domain, d)) {
            DomainClass::Blocked
        } else if self.free_mail.contains(domain) {
            DomainClass::FreeMail
        } else {
            DomainClass::Company
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_order() {
        let r = DomainRules::new(
            &["example.com".into()],
            &["rival.example".into()],
            &["custom-free.example".into()],
        );
        assert_eq!(r.classify("example.com"), DomainClass::Internal);
        assert_eq!(r.classify("eu.example.com"), DomainClass::Internal);
        assert_eq!(r.classify("rival.example"), DomainClass::Blocked);
        assert_eq!(r.classify("gmail.com"), DomainClass::FreeMail);
        assert_eq!(r.classify("custom-free.example"), DomainClass::FreeMail);
        assert_eq!(r.classify("acme.example"), DomainClass::Company);
    }
}
