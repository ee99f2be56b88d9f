//! Email addresses as Rapport compares them: trimmed, lower-cased, checked for shape.

/// Why an address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("`{0}` has no single @ between a local part and a domain")]
    Shape(String),
    #[error("`{0}` has a domain without a dot or with invalid characters")]
    Domain(String),
    #[error("`{0}` contains spaces or control characters")]
    Characters(String),
    #[error("`{0}` is longer than 254 characters")]
    TooLong(String),
}

/// Returns the canonical (lower-case, trimmed) form of an address, or why it is not one.
///
/// This is deliberately a shape check, not RFC 5322: it accepts what real mailboxes use and
/// rejects what is obviously not an address (typos in CSV files, display names, blanks).
pub fn normalize(raw: &str) -> Result<String, AddressError> {
    let s = raw.trim().trim_start_matches('<').trim_end_matches('>');
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if s.len() > 254 {
        return Err(AddressError::TooLong(s.to_owned()));
    }
    // The usual case, and a hot one (every address of every message): ASCII, checked byte by
    // byte (the same rules as for any text, without decoding characters).
    let ascii = s.is_ascii();
    let bad_character = if ascii {
        s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    } else {
        s.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if bad_character {
        return Err(AddressError::Characters(s.to_owned()));
    }
    let (local, domain) = match split_at_last_at(s) {
        Some((l, d)) if !l.is_empty() && !d.is_empty() && !l.as_bytes().contains(&b'@') => (l, d),
        _ => return Err(AddressError::Shape(s.to_owned())),
    };
    let domain_characters = if ascii {
        domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    } else {
        domain.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.')
    };
    let domain_ok = domain_characters
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        // Not `contains("..")`: a substring search costs more to set up than this whole check.
        && !domain.as_bytes().windows(2).any(|w| w == b"..");
    if !domain_ok {
        return Err(AddressError::Domain(s.to_owned()));
    }
    if ascii {
        // One allocation.
        return Ok(s.to_ascii_lowercase());
    }
    Ok(format!("{}@{}", local.to_lowercase(), domain.to_lowercase()))
}

/// `s` split around its last `@`: `rsplit_once('@')`, without the general searcher behind it,
/// which cost more than the rest of handling a short address (several times per message).
fn split_at_last_at(s: &str) -> Option<(&str, &str)> {
    let at = s.as_bytes().iter().rposition(|&b| b == b'@')?;
    // `@` is one byte in UTF-8: both sides are whole characters.
    Some((&s[..at], &s[at + 1..]))
}

/// The domain of a normalized address.
pub fn domain_of(addr: &str) -> &str {
    split_at_last_at(addr).map(|(_, d)| d).unwrap_or("")
}

/// Removes a `+tag` from the local part (`sara+news@acme.example` → `sara@acme.example`).
pub fn strip_plus_tag(addr: &str) -> String {
    if let Some((local, domain)) = split_at_last_at(addr)
        && let Some(plus) = local.as_bytes().iter().position(|&b| b == b'+')
        && plus > 0
    {
        let mut out = String::with_capacity(plus + 1 + domain.len());
        out.push_str(&local[..plus]);
        out.push('@');
        out.push_str(domain);
        return out;
    }
    addr.to_owned()
}

/// Normalizes a domain name as written in config (`@Acme.Example` → `acme.example`).
pub fn normalize_domain(raw: &str) -> Option<String> {
    let d = raw.trim().trim_start_matches('@').trim_end_matches('.').to_lowercase();
    let ok = !d.is_empty()
        && !d.starts_with('.')
        && !d.contains("..")
        && d.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    ok.then_some(d)
}

/// True when `domain` is `base` or one of its subdomains.
pub fn domain_within(domain: &str, base: &str) -> bool {
    domain == base
        || (domain.len() > base.len() && domain.ends_with(base) && domain[..domain.len() - base.len()].ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_brackets() {
        assert_eq!(
            normalize(" <Sara.Lind@ACME.example> ").unwrap(),
            "sara.lind@acme.example"
        );
        // Beyond ASCII: each part lower-cased on its own, as before the ASCII shortcut.
        assert_eq!(normalize("ÅSA@Bücher.example").unwrap(), "åsa@bücher.example");
    }

    #[test]
    fn rejects_non_addresses() {
        assert_eq!(normalize(""), Err(AddressError::Empty));
        assert!(matches!(normalize("sara"), Err(AddressError::Shape(_))));
        assert!(matches!(normalize("a@b@c.example"), Err(AddressError::Shape(_))));
        assert!(matches!(normalize("sara@acme"), Err(AddressError::Domain(_))));
        assert!(matches!(normalize("sara@acme..example"), Err(AddressError::Domain(_))));
        assert!(matches!(
            normalize("sara lind@acme.example"),
            Err(AddressError::Characters(_))
        ));
    }

    #[test]
    fn ascii_bytes_follow_the_rules_for_characters() {
        for b in 0u8..128 {
            let c = b as char;
            let local = format!("a{c}b@x.example");
            let spaced = c.is_whitespace() || c.is_control();
            assert_eq!(
                matches!(normalize(&local), Err(AddressError::Characters(_))),
                spaced,
                "{b:#x} in the local part"
            );
            let domain = format!("ab@x{c}y.example");
            let allowed = c.is_alphanumeric() || c == '-' || c == '.';
            assert_eq!(normalize(&domain).is_ok(), !spaced && allowed, "{b:#x} in the domain");
        }
    }

    #[test]
    fn plus_tags() {
        assert_eq!(strip_plus_tag("sara+news@acme.example"), "sara@acme.example");
        assert_eq!(strip_plus_tag("+x@acme.example"), "+x@acme.example");
        assert_eq!(strip_plus_tag("sara@acme.example"), "sara@acme.example");
        // The same answers as the plain definition (`rsplit_once`, `split_once`), on odd inputs.
        let reference = |addr: &str| match addr.rsplit_once('@') {
            Some((local, domain)) => match local.split_once('+') {
                Some((base, _)) if !base.is_empty() => format!("{base}@{domain}"),
                _ => addr.to_owned(),
            },
            None => addr.to_owned(),
        };
        for addr in [
            "",
            "@",
            "+@",
            "a+@",
            "a+b+c@d",
            "a@b@c",
            "a+b@c@d",
            "a@b+c",
            "ünï+cödé@exämple.org",
            "+",
            "a+b",
            "@+",
            "x@",
            "é@+é",
        ] {
            assert_eq!(strip_plus_tag(addr), reference(addr), "{addr:?}");
            assert_eq!(
                domain_of(addr),
                addr.rsplit_once('@').map_or("", |(_, d)| d),
                "{addr:?}"
            );
        }
    }

    #[test]
    fn subdomains() {
        assert!(domain_within("eu.acme.example", "acme.example"));
        assert!(domain_within("acme.example", "acme.example"));
        assert!(!domain_within("notacme.example", "acme.example"));
        assert_eq!(normalize_domain("@Acme.Example."), Some("acme.example".into()));
        assert_eq!(normalize_domain("bad domain"), None);
    }
}
