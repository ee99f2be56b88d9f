//! Recognising automatic replies (out-of-office and friends): RFC 3834 `Auto-Submitted`, the
//! vendor headers, and subject prefixes in the languages our customers write in.

use crate::sources::mail::MailHeaders;

/// Subject prefixes of automatic replies, lower-case. English, German, French, Spanish,
/// Italian, Dutch, Swedish, Portuguese and Persian.
const SUBJECT_PREFIXES: &[&str] = &[
    "automatic reply",
    "auto reply",
    "autoreply",
    "auto-reply",
    "auto:",
    "out of office",
    "out of the office",
    "ooo:",
    "abwesenheitsnotiz",
    "automatische antwort",
    "abwesend:",
    "réponse automatique",
    "reponse automatique",
    "absence:",
    "absence :",
    "absence du",
    "absent du bureau",
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina",
    "ausente:",
    "risposta automatica",
    "fuori sede",
    "automatisch antwoord",
    "afwezig",
    "autosvar",
    "frånvaro",
    "resposta automática",
    "ausência",
    "پاسخ خودکار",
    "خارج از دفتر",
];

/// Why a message was taken for an automatic reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoReplySignal {
    /// RFC 3834 `Auto-Submitted` with a value other than `no`.
    AutoSubmitted(String),
    /// `X-Autoreply`, `X-Autorespond` or Microsoft's out-of-office marker.
    VendorHeader,
    /// `Precedence: auto_reply`.
    Precedence,
    /// The subject starts like an automatic reply.
    Subject(&'static str),
}

/// The signal that marks `h` as an automatic reply, if any.
pub fn auto_reply_signal(h: &MailHeaders) -> Option<AutoReplySignal> {
    if let Some(v) = &h.auto_submitted
        && v != "no"
    {
        return Some(AutoReplySignal::AutoSubmitted(v.clone()));
    }
    if h.vendor_auto_reply {
        return Some(AutoReplySignal::VendorHeader);
    }
    if h.precedence.as_deref() == Some("auto_reply") {
        return Some(AutoReplySignal::Precedence);
    }
    let subject = h.subject.as_deref()?.trim().to_lowercase();
    // "Re: Out of office" is a person answering about an absence, not an auto-reply.
    SUBJECT_PREFIXES
        .iter()
        .find(|p| subject.starts_with(*p))
        .map(|p| AutoReplySignal::Subject(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_subject(s: &str) -> MailHeaders {
        MailHeaders {
            subject: Some(s.into()),
            ..Default::default()
        }
    }

    #[test]
    fn subjects_in_several_languages() {
        for s in [
            "Automatic reply: Proposal",
            "Out of Office: back Monday",
            "Abwesenheitsnotiz: Angebot",
            "Automatische Antwort: Ihre Anfrage",
            "Réponse automatique : devis",
            "Respuesta automática: propuesta",
            "پاسخ خودکار: پیشنهاد",
        ] {
            assert!(auto_reply_signal(&with_subject(s)).is_some(), "{s}");
        }
        for s in ["Re: Proposal", "Re: Out of office", "Absolutely!", "Meeting next week"] {
            assert_eq!(auto_reply_signal(&with_subject(s)), None, "{s}");
        }
    }

    #[test]
    fn headers_win() {
        let h = MailHeaders {
            auto_submitted: Some("auto-replied".into()),
            subject: Some("Thanks".into()),
            ..Default::default()
        };
        assert_eq!(
            auto_reply_signal(&h),
            Some(AutoReplySignal::AutoSubmitted("auto-replied".into()))
        );
        let no = MailHeaders {
            auto_submitted: Some("no".into()),
            subject: Some("Thanks".into()),
            ..Default::default()
        };
        assert_eq!(auto_reply_signal(&no), None);
    }
}
