#!/usr/bin/env python3
"""Generates Rapport's bundled example data (the mail behind config/example.yaml) and checks it.

    scripts/gen-example-data.py          rewrite config/example/{leads.csv,mail/,calendars/,expected.json}, then check
    scripts/gen-example-data.py --check  only check the files on disk

What is made: ~60 leads at 20 fictional companies (plus four on free-mail), and a Maildir++ per
rep (`mail/<rep>/{cur,new,tmp}` is INBOX, `mail/<rep>/.Sent/{cur,new,tmp}` is Sent). The mail is
mostly ordinary sales threads, plus the cases the matcher must get right: auto-replies, bounces,
newsletters, internal mail, unknown senders and odd headers (see alice_cases, bob_cases,
chiara_cases, background). Everything is drawn from random.Random(2026): the output is
byte-for-byte the same on every run.

Each rep also gets a calendar (`calendars/<rep>.ics`): meetings with leads in October 2026 (held,
whatever "now" is after that) and in 2031 (booked, far enough ahead for any test clock), plus the
cases that must not count (declined, internal only, unknown guests, cancelled) and broken items.

expected.json says, per message file, what Rapport should log for the rep whose mailbox holds
it. The generator writes down the *intent* of each scenario; `--check` re-reads the files with
Python's `email` package and re-derives every outcome from the headers alone, using the matching
rules in `classify`. The two must agree. Standard library only (Python 3.11).
"""
from __future__ import annotations

import base64, csv, json, quopri, random, re, shutil, sys, unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.header import Header, decode_header, make_header
from email.utils import format_datetime, formataddr, getaddresses
from pathlib import Path
from zoneinfo import ZoneInfo

OUT = Path(__file__).resolve().parent.parent / "config" / "example"
MAIL = OUT / "mail"
FREE_MAIL_LIST = OUT.parent.parent / "src" / "matcher" / "free_mail.txt"
UTC = timezone.utc
START, END = datetime(2026, 10, 1, 6, tzinfo=UTC), datetime(2026, 11, 27, 16, tzinfo=UTC)
INTERNAL = "example.com"
KINDS = ("email_sent", "email_received", "reply_received", "auto_reply", "bounce")
MEETING_KINDS = ("meeting_booked", "meeting_held")
CALENDARS = OUT / "calendars"
NOREPLY = {"noreply", "no-reply", "donotreply", "notifications", "mailer-daemon"}
AUTO_SUBJECTS = ("Automatic reply:", "Auto: ", "Out of Office:", "Out of office", "Abwesenheitsnotiz",
                 "Automatische Antwort", "Réponse automatique", "Absence", "Respuesta automática",
                 "Fuera de la oficina", "پاسخ خودکار")


@dataclass(frozen=True)
class Person:
    name: str
    addr: str                # as written in the headers
    tz: str                  # IANA zone of the Date header when this person sends
    lead: str | None = None  # the lead address Rapport should match this person to, if any

    @property
    def first(self) -> str:
        return self.name.split()[0]

    @property
    def host(self) -> str:  # right-hand side of the Message-IDs this person's mail server makes
        d = self.addr.lower().split("@")[1]
        return "mail." + d if d in (INTERNAL, "gmail.com") else d


REPS = {"alice": Person("Alice Andersson", "alice@example.com", "Europe/Stockholm"),
        "bob": Person("Bob Brown", "bob@example.com", "America/New_York"),
        "chiara": Person("Chiara Conti", "chiara@example.com", "Europe/Rome")}
ALICE_ALIAS = Person("Alice Andersson", "a.andersson@example.com", "Europe/Stockholm")
OWN = {"alice": {"alice@example.com", "a.andersson@example.com"}, "bob": {"bob@example.com"},
       "chiara": {"chiara@example.com"}}
REP_OF = {a: rep for rep, addrs in OWN.items() for a in addrs}
DAVE = Person("Dave Dawson", "dave@example.com", "Europe/Stockholm")  # colleagues who are not reps
ERIN = Person("Erin Eklund", "erin@example.com", "Europe/Stockholm")
SUPPORT = Person("Example Support", "support@example.com", "UTC")
FINANCE = Person("Example Finance", "finance@example.com", "Europe/Stockholm")

# name, domain, time zone, industry, owner, name pool, number of leads
COMPANIES = [
    ("Acme Robotics AB", "acme-robotics.example", "Europe/Stockholm", "manufacturing", "alice", "se", 4),
    ("Nordlicht Energie GmbH", "nordlicht.example", "Europe/Berlin", "energy", "alice", "de", 3),
    ("Fjordline Shipping AS", "fjordline.example", "Europe/Oslo", "logistics", "alice", "no", 3),
    ("Revontuli Games Oy", "revontuli.example", "Europe/Helsinki", "gaming", "alice", "fi", 3),
    ("Tulip Logistics BV", "tulip-logistics.example", "Europe/Amsterdam", "logistics", "alice", "nl", 2),
    ("Kvarnbo Livsmedel AB", "kvarnbo.example", "Europe/Stockholm", "food", "alice", "se", 3),
    ("Hansa Maschinenbau AG", "hansa-maschinenbau.example", "Europe/Berlin", "machinery", "alice", "de", 3),
    ("Granite Peak Outdoor Inc.", "granitepeak.example", "America/Denver", "retail", "bob", "us", 3),
    ("Bluefin Analytics LLC", "bluefin-analytics.example", "America/New_York", "software", "bob", "us", 3),
    ("Cascade Medical Devices", "cascade-medical.example", "America/Los_Angeles", "healthcare", "bob", "us", 3),
    ("Prairie Foods Co.", "prairiefoods.example", "America/Chicago", "food", "bob", "us", 3),
    ("Maple Leaf Freight", "mapleleaf-freight.example", "America/Toronto", "logistics", "bob", "us", 2),
    ("Thames Fintech Ltd", "thames-fintech.example", "Europe/London", "finance", "bob", "uk", 3),
    ("Ferro Tessile S.p.A.", "ferrotessile.example", "Europe/Rome", "textiles", "chiara", "it", 4),
    ("Vigna Alta S.r.l.", "vigna-alta.example", "Europe/Rome", "wine", "chiara", "it", 3),
    ("Atelier Lumière SA", "atelier-lumiere.example", "Europe/Paris", "design", "chiara", "fr", 3),
    ("Solaris Ibérica S.L.", "solaris-iberica.example", "Europe/Madrid", "energy", "chiara", "es", 3),
    ("Pars Logistics", "pars-logistics.example", "Asia/Tehran", "logistics", "chiara", "ir", 2),
    ("Helvetia Precision AG", "helvetia-precision.example", "Europe/Zurich", "machinery", "chiara", "de", 3),
    ("Milano Moda Group", "milanomoda.example", "Europe/Rome", "fashion", "chiara", "it", 2),
]
NAMES = {  # first names | last names
    "se": "Sara,Erik,Johan,Maja,Lars,Ingrid,Oskar,Elin|Lind,Berg,Holm,Nyström,Sjöberg,Lundqvist,Wallin,Åberg",
    "de": "Jürgen,Katrin,Felix,Anna,Lukas,Sabine,Tobias,Miriam|Keller,Köhler,Weber,Hoffmann,Schäfer,Krüger,Vogel",
    "no": "Ola,Kari,Henrik,Sigrid,Magnus,Ingvild|Haugen,Solberg,Bakken,Dahl,Strand,Moen",
    "fi": "Aino,Mikko,Juha,Laura,Ville,Sanna|Virtanen,Korhonen,Mäkinen,Nieminen,Laine,Heikkinen",
    "nl": "Daan,Sanne,Bram,Femke,Joris,Lotte|de Vries,Jansen,van Dijk,Bakker,Visser,Smit",
    "us": "Emily,Jason,Megan,Tyler,Rachel,Kevin,Ashley,Brandon,Lauren|Miller,Carter,Reed,Hughes,Parker,Foster,Brooks",
    "uk": "Oliver,Charlotte,Harry,Amelia,George,Isla|Whitaker,Pemberton,Clarke,Ashworth,Fletcher,Hargreaves",
    "it": "Giulia,Luca,Francesca,Alessandro,Elena,Matteo,Sofia,Davide|Rossi,Ferrari,Esposito,Romano,Colombo,Ricci",
    "fr": "Camille,Julien,Claire,Mathieu,Élodie,Antoine|Dubois,Lefèvre,Moreau,Laurent,Girard,Fontaine",
    "es": "Lucía,Javier,Carmen,Pablo,Marta,Diego|García,Fernández,López,Martín,Sánchez,Romero",
    "ir": "Parisa,Reza,Maryam,Ali|Rahimi,Karimi,Hosseini,Ahmadi",
}
FREE_MAIL_LEADS = [  # freelancers and small shops whose only address is a free-mail one
    ("nina.holm.consulting@gmail.com", "Nina", "Holm", "alice", "Europe/Copenhagen", "qualified", "consulting"),
    ("mike.oconnor@outlook.com", "Mike", "O'Connor", "bob", "America/New_York", "contacted", "consulting"),
    ("dana.whitfield@gmail.com", "Dana", "Whitfield", "bob", "America/Chicago", "new", "retail"),
    ("marco.bianchi78@gmail.com", "Marco", "Bianchi", "chiara", "Europe/Rome", "qualified", "wine"),
]
# At these companies the last lead has left: mail to them bounces.
GONE = {"acme-robotics.example", "hansa-maschinenbau.example", "cascade-medical.example", "ferrotessile.example"}

# What people write. {company} and {industry} are filled in per lead.
TOPICS = [
    ("Intro: Example for {company}", "I work with {industry} teams that wanted their sales activity tracked\n"
     "without anyone typing it in. Would a 20-minute call next week be useful?"),
    ("Following up on our call", "Thanks for your time today. As promised, a short summary:\n"
     "- pilot with 5 seats for 30 days\n- onboarding handled by our team\n- pricing valid until December"),
    ("Pricing for {company}", "Here is the pricing we discussed: 49 EUR per seat and month, billed\n"
     "annually, first 30 days free. Happy to walk your finance team through it."),
    ("Demo recap and next steps", "Great to show you the dashboard yesterday. The next step on our side\n"
     "is the security questionnaire. Could you send it over when you have it?"),
    ("Meeting next week?", "Would Tuesday or Wednesday afternoon work for a follow-up with your\n"
     "operations lead? 30 minutes should be enough."),
    ("Case study: {industry}", "I thought this might interest you: a {industry} company cut its weekly\n"
     "reporting time in half during its first quarter with us."),
    ("Contract draft v2", "Please find the updated terms below. We changed the notice period to\n"
     "60 days as requested; everything else is unchanged."),
    ("{company} and your Q1 plans", "Are you still planning to roll out a new CRM in Q1? If so, it may\n"
     "make sense to talk before the vendor list is final."),
]
LEAD_TOPICS = [
    ("Question about your pricing", "We are comparing a few tools for our sales team. Do you offer\n"
     "discounts for teams above 20 seats?"),
    ("Request for a demo", "A colleague recommended you. Could we set up a demo for our team\nnext week?"),
    ("Security documentation", "Our IT department asks for your data processing agreement and a\n"
     "short description of where the data is stored."),
    ("Invoice address for the pilot", "For the pilot order, please use our new invoice address:\n"
     "Finance department, PO box 1200."),
]
FOLLOWUPS = ["Just bumping this up in case it got buried. Any thoughts?",
             "A quick follow-up on my note below: would a short call next week work?",
             "I know it is a busy quarter. Should I reach out to someone else on your team?"]
ANSWERS = ["Thanks for the quick answer. I will send the updated numbers by Friday.",
           "Good question: yes, it works with your existing mail server. Nothing changes for your reps.",
           "Sounds good. I have sent a calendar invitation for Thursday at 10:00.",
           "Understood. I will get back to you in January unless something changes on your side."]
LEAD_REPLIES = ["Thanks, this looks interesting. Can you send a few references from our industry?",
                "We discussed it internally and would like a demo with our operations team.",
                "Budget for next year is being set right now; let me come back to you in two weeks.",
                "Could you clarify whether the price includes onboarding?",
                "Works for us. Thursday at 10:00 is fine.",
                "Not a priority this quarter, but please keep in touch."]
TINY_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
            b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


@dataclass
class Lead:
    email: str
    first: str
    last: str
    company: str
    owner: str
    tz: str
    status: str
    industry: str
    gone: bool = False  # left the company: mail to this address bounces

    @property
    def person(self) -> Person:
        return Person(f"{self.first} {self.last}", self.email, self.tz, lead=self.email)


@dataclass
class Msg:
    raw: bytes        # as the sender's Sent folder keeps it (with Bcc)
    delivered: bytes  # as recipients get it (without Bcc)
    mid: str | None
    subject: str
    text: str
    when: datetime
    refs: list[str]
    frm: Person
    to: list[Person]
    cc: list[Person] = field(default_factory=list)
    bcc: list[Person] = field(default_factory=list)


@dataclass
class Filed:  # one message file in one rep's mailbox, and what Rapport should make of it
    rep: str
    folder: str  # INBOX | Sent
    msg: Msg | None
    raw: bytes
    expected: str | None
    why: str
    leads: list[str]
    file: str = ""


def fold(s: str) -> str:
    """Lower-case ASCII for building addresses: 'Jürgen' → 'jurgen', 'de Vries' → 'devries'."""
    s = unicodedata.normalize("NFKD", s.replace("ß", "ss")).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", s.lower())


def make_leads(rng: random.Random) -> list[Lead]:
    leads = []
    for company, domain, tz, industry, owner, pool, n in COMPANIES:
        firsts, lasts = (part.split(",") for part in NAMES[pool].split("|"))
        style = rng.choice(["{f}.{l}", "{f}.{l}", "{f0}{l}"])
        names = [("Sara", "Lind")] if domain == "acme-robotics.example" else []
        while len(names) < n:
            f, l = rng.choice(firsts), rng.choice(lasts)
            if all(f != a and l != b for a, b in names):
                names.append((f, l))
        for i, (f, l) in enumerate(names):
            gone = domain in GONE and i == n - 1
            status = rng.choice(["new", "contacted", "qualified", "qualified", "proposal", "negotiation"])
            leads.append(Lead(style.format(f=fold(f), l=fold(l), f0=fold(f)[0]) + "@" + domain, f, l, company,
                              owner, tz, "contacted" if gone else status, industry, gone))
    return leads + [Lead(e, f, l, "", o, tz, s, ind) for e, f, l, o, tz, s, ind in FREE_MAIL_LEADS]


def addrs(people) -> str:
    return ", ".join(formataddr((p.name, p.addr)) for p in people)


def crlf(b: bytes) -> bytes:
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def render(headers: list[tuple[str, str | bytes]], body: bytes) -> bytes:
    """Header lines (str values must be ASCII; bytes go out as they are), a blank line, the body."""
    lines = [name.encode() + b": " + (v if isinstance(v, bytes) else crlf(v.encode("ascii")))
             for name, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class World:
    """All leads and all message files, built scenario by scenario."""

    def __init__(self):
        self.rng = random.Random(2026)
        self.leads = make_leads(self.rng)
        self.files: list[Filed] = []

    # --- people, time, ids ----------------------------------------------------------------------
    def lead(self, rep: str, domain: str | None = None, i: int = 0, gone: bool = False) -> Person:
        """The i-th lead of a rep (at a domain, or one that has left)."""
        pool = [l for l in self.leads
                if l.owner == rep and l.gone == gone and domain in (None, l.email.split("@")[1])]
        return pool[i % len(pool)].person

    def free_mail_lead(self, prefix: str) -> Person:
        return next(l.person for l in self.leads if l.email.startswith(prefix))

    def company(self, p: Person) -> dict:
        lead = next(l for l in self.leads if l.email == p.lead)
        return {"company": lead.company or "your team", "industry": lead.industry}

    def office(self, t: datetime, tz: str) -> datetime:
        """Moves t into the sender's office hours (Mon–Fri, 08–18 local time)."""
        loc = t.astimezone(ZoneInfo(tz))
        while loc.weekday() >= 5 or not 8 <= loc.hour < 18:
            day = loc if loc.hour < 8 and loc.weekday() < 5 else loc + timedelta(days=1)
            loc = day.replace(hour=8, minute=self.rng.randrange(60))
        return loc.astimezone(UTC)

    def at(self, tz: str, first_day: int = 0, last_day: int = 55) -> datetime:
        """A random office-hours moment, first_day..last_day days after Oct 1."""
        t = START + timedelta(days=self.rng.randint(first_day, last_day), minutes=self.rng.randrange(14 * 60))
        t = self.office(t, tz)
        return t if t <= END else END - timedelta(minutes=self.rng.randrange(240))

    def after(self, prev: datetime, tz: str) -> datetime:
        """When an answer to a message sent at prev goes out: 25 minutes to 1.5 days later."""
        t = self.office(prev + timedelta(minutes=self.rng.randint(25, 36 * 60)), tz)
        return t if t <= END else prev + timedelta(minutes=10)

    def new_id(self, host: str) -> str:
        return f"<{self.rng.getrandbits(64):016x}.{self.rng.getrandbits(20):05x}@{host}>"

    # --- composing messages ---------------------------------------------------------------------
    def letter(self, frm: Person, to: Person, text: str, parent: Msg | None) -> str:
        if frm.addr.endswith("@" + INTERNAL):
            sign = f"Best regards,\n{frm.name}\nExample Inc."
        else:
            sign = f"{self.rng.choice(['Thanks,', 'Best,', 'Kind regards,', 'Cheers,'])}\n{frm.first}"
        out = f"Hi {to.first},\n\n{text}\n\n{sign}\n"
        if parent:
            when = parent.when.astimezone(ZoneInfo(frm.tz)).strftime("%a, %d %b %Y at %H:%M")
            quoted = "".join(f"> {l}".rstrip() + "\n" for l in parent.text.splitlines()[:4])
            out += f"\nOn {when}, {parent.frm.name} wrote:\n{quoted}"
        return out

    def body(self, text: str, attachment: str | None) -> tuple[list, bytes]:
        """Content headers and body: text/plain (a quarter quoted-printable), or with a PDF attached."""
        data = text.encode()
        if self.rng.random() < 0.25:
            cte, data = "quoted-printable", quopri.encodestring(data)
        else:
            cte = "7bit" if data.isascii() else "8bit"
        part = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Transfer-Encoding", cte)]
        if not attachment:
            return part, crlf(data)
        b = f"=_part_{self.rng.getrandbits(32):08x}"
        pdf = [("Content-Type", f'application/pdf; name="{attachment}"'),
               ("Content-Disposition", f'attachment; filename="{attachment}"'),
               ("Content-Transfer-Encoding", "base64")]
        body = (f"This is a multi-part message in MIME format.\r\n\r\n--{b}\r\n".encode()
                + render(part, crlf(data)) + f"\r\n--{b}\r\n".encode()
                + render(pdf, crlf(base64.encodebytes(TINY_PDF))) + f"--{b}--\r\n".encode())
        return [("Content-Type", f'multipart/mixed; boundary="{b}"')], body

    def compose(self, frm: Person, to: list[Person], subject: str, text: str, when: datetime, *,
                cc=(), bcc=(), parent: Msg | None = None, refs: list[str] | None = None, extra=(),
                with_id=True, attachment=None, charset="utf-8", raw_subject: bytes | None = None) -> Msg:
        """A complete RFC 5322 message. A reply (parent) threads on its parent and keeps its subject."""
        if parent:
            refs = parent.refs + [parent.mid] if refs is None else refs
            subject = subject or "Re: " + re.sub(r"^(Re: )+", "", parent.subject)
        refs = refs or []
        mid = self.new_id(frm.host) if with_id else None
        h = [("From", addrs([frm])), ("To", addrs(to) or "undisclosed-recipients:;")]
        h += [("Cc", addrs(cc))] if cc else []
        h += [("Subject", raw_subject or (subject if subject.isascii() else Header(subject, charset).encode())),
              ("Date", format_datetime(when.astimezone(ZoneInfo(frm.tz))))]
        h += [("Message-ID", mid)] if mid else []
        h += [("In-Reply-To", parent.mid if parent else refs[-1]), ("References", "\n ".join(refs))] if refs else []
        h += list(extra) + [("MIME-Version", "1.0")]
        part, body = self.body(text, attachment)
        delivered = render(h + part, body)
        raw = render(h[:2] + [("Bcc", addrs(bcc))] + h[2:] + part, body) if bcc else delivered
        return Msg(raw, delivered, mid, subject, text, when, refs, frm, list(to), list(cc), list(bcc))

    def mail(self, frm: Person, to: list[Person], subject: str, text: str, **kw) -> Msg:
        """compose() with greeting, signature and quote, sent at a random time unless `when` is given."""
        parent = kw.pop("parent", None)
        text = self.letter(frm, (to or kw.get("bcc"))[0], text, parent)
        when = kw.pop("when", None) or (self.after(parent.when, frm.tz) if parent else self.at(frm.tz))
        return self.compose(frm, to, subject, text, when, parent=parent, **kw)

    # --- filing into mailboxes --------------------------------------------------------------------
    def post(self, rep: str, folder: str, m: Msg, expected: str | None, why: str, leads=None):
        if leads is None:  # everyone on the message whom Rapport matches
            people = [m.frm] + m.to + m.cc + (m.bcc if folder == "Sent" else [])
            leads = list(dict.fromkeys(p.lead for p in people if p.lead)) if expected else []
        raw = m.raw if folder == "Sent" else m.delivered
        self.files.append(Filed(rep, folder, m, raw, expected, why, leads))

    def inbox(self, rep: str, m: Msg, expected: str | None, why: str):
        self.post(rep, "INBOX", m, expected, why)

    def send(self, m: Msg, why="outbound to a lead", why_not="no recipient is a lead or at a lead's company"):
        """Files a rep's message in their Sent folder, and a copy in the INBOX of every rep it reached."""
        rep = REP_OF[m.frm.addr]
        kind = "email_sent" if any(p.lead for p in m.to + m.cc + m.bcc) else None
        self.post(rep, "Sent", m, kind, why if kind else why_not)
        for p in m.to + m.cc + m.bcc:
            if REP_OF.get(p.addr) == rep:
                self.inbox(rep, m, kind, "own message Bcc'd to self: same Message-ID as in Sent, counted once")
            elif p.addr in REP_OF:
                self.inbox(REP_OF[p.addr], m, None, f"from a colleague ({m.frm.addr})")

    def receive(self, m: Msg, expected: str | None, why: str):
        """Files a message from someone else in the INBOX of every rep it was addressed to."""
        for p in m.to + m.cc:
            if p.addr in REP_OF:
                self.inbox(REP_OF[p.addr], m, expected, why)

    def conversation(self, rep: str, lead: Person, turns: str, attachment=None, sender=None):
        """One sales thread: turns like "RLR" (R: the rep writes, L: the lead writes)."""
        me, prev, rep_wrote = sender or REPS[rep], None, False
        subject, text = (s.format(**self.company(lead)) for s in self.rng.choice(
            TOPICS if turns[0] == "R" else LEAD_TOPICS))
        for i, who in enumerate(turns):
            frm, to = (me, lead) if who == "R" else (lead, me)
            if prev and who == "R":
                text = self.rng.choice(FOLLOWUPS if prev.frm == me else ANSWERS)
            elif prev:
                text = self.rng.choice(LEAD_REPLIES)
            m = self.mail(frm, [to], subject if prev is None else "", text, parent=prev,
                          when=None if prev else self.at(frm.tz, 0, 46), attachment=attachment if i == 0 else None)
            if who == "R":
                self.send(m, "rep writes again in a thread" if prev else "rep writes to a lead")
                rep_wrote = True
            elif rep_wrote:
                self.inbox(rep, m, "reply_received", "In-Reply-To/References name a message in the rep's Sent")
            else:
                self.inbox(rep, m, "email_received", "a lead writes, not answering the rep")
            prev = m

    def dsn(self, rep: str, original: Msg, mx: str, expected: str | None, why: str):
        """A bounce: MAILER-DAEMON reports that the original's recipient does not exist."""
        addr, b = original.to[0].addr, f"{self.rng.getrandbits(40):010X}.bounce"
        domain, when, mid = addr.split("@")[1], original.when + timedelta(minutes=2), self.new_id(mx)
        headers = [l for l in original.raw.split(b"\r\n\r\n")[0].decode().split("\r\n")
                   if l.split(":")[0] in ("From", "To", "Subject", "Date", "Message-ID")]
        body = "\n".join([
            f"--{b}", "Content-Type: text/plain; charset=us-ascii", "",
            f"This is the mail system at host {mx}.", "",
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients.", "",
            f"<{addr}>: host mx.{domain} said: 550 5.1.1 User unknown", "",
            f"--{b}", "Content-Type: message/delivery-status", "",
            f"Reporting-MTA: dns; {mx}", f"Arrival-Date: {format_datetime(original.when)}", "",
            f"Final-Recipient: rfc822; {addr}", f"Original-Recipient: rfc822;{addr}", "Action: failed",
            "Status: 5.1.1", f"Remote-MTA: dns; mx.{domain}",
            f"Diagnostic-Code: smtp; 550 5.1.1 <{addr}>: Recipient address rejected: User unknown", "",
            f"--{b}", "Content-Type: text/rfc822-headers", "", *headers, "", f"--{b}--", ""])
        h = [("From", f"Mail Delivery System <MAILER-DAEMON@{mx}>"), ("To", addrs([REPS[rep]])),
             ("Subject", "Undelivered Mail Returned to Sender"), ("Date", format_datetime(when)),
             ("Message-ID", mid), ("Auto-Submitted", "auto-replied"), ("MIME-Version", "1.0"),
             ("Content-Type", f'multipart/report; report-type=delivery-status; boundary="{b}"')]
        raw = render(h, crlf(body.encode()))
        m = Msg(raw, raw, mid, "Undelivered Mail Returned to Sender", "", when, [],
                Person("Mail Delivery System", f"MAILER-DAEMON@{mx}", "UTC"), [REPS[rep]])
        self.post(rep, "INBOX", m, expected, why, leads=[addr] if expected else [])

    def newsletter(self, rep: str, name: str, addr: str, subject: str, bulk=False, list_id=True):
        domain = addr.split("@")[1]
        extra = [("List-Id", f"{name} <{fold(name)}.{domain}>"),
                 ("List-Unsubscribe", f"<https://{domain}/u/{self.rng.getrandbits(32):08x}>, "
                                      f"<mailto:leave@{domain}>")] if list_id else []
        extra += [("Precedence", "bulk")] if bulk else []
        text = f"{subject}\n\nRead online: https://{domain}/issues/latest\nUnsubscribe: https://{domain}/u\n"
        m = self.compose(Person(name, addr, "UTC"), [REPS[rep]], subject, text, self.at("UTC"), extra=extra)
        self.inbox(rep, m, None, "mailing list (List-Id)" if list_id else "bulk mail (Precedence: bulk)")


# --- the scenarios ---------------------------------------------------------------------------------

def regular_traffic(w: World, rep: str, n: int):
    """The bulk of each mailbox: n conversations with the rep's own leads, of assorted shapes."""
    shapes = (["R"] * 8 + ["RR"] * 3 + ["RL"] * 6 + ["RLR"] * 6 + ["RLRL"] * 4 + ["RRL"] * 3
              + ["RLRLR"] * 2 + ["L"] * 3 + ["LR"] * 3 + ["LRL"] * 3)
    for i in range(n):
        w.conversation(rep, w.lead(rep, i=i), w.rng.choice(shapes))


def alice_cases(w: World):
    a, sara = REPS["alice"], w.lead("alice", "acme-robotics.example")
    jonas_addr = "jonas.ek@acme-robotics.example"  # not in leads.csv
    jonas = Person("Jonas Ek", jonas_addr, "Europe/Stockholm", lead=jonas_addr)
    # A proposal with a PDF. Sara answers with Jonas (not in leads.csv) in Cc: a new lead by company domain.
    m = w.mail(a, [sara], "Acme Robotics pilot proposal", "Attached is the pilot proposal we talked about.",
               attachment="Acme-Robotics-proposal.pdf", when=w.at(a.tz, 3, 6))
    w.send(m, "outbound to a lead, with a PDF attachment")
    m = w.mail(sara, [a], "", "Thanks! I added Jonas from finance, he will review the numbers.", parent=m, cc=[jonas])
    w.inbox("alice", m, "reply_received", "reply; Jonas in Cc is matched by company domain (new lead)")
    m = w.mail(a, [sara], "", "Welcome Jonas! Let me know if section 3 is unclear.", parent=m, cc=[jonas])
    w.send(m, "follow-up to a lead and an auto-created lead")
    m = w.mail(jonas, [a], "", "Section 3 is clear. We would like to start in January.", parent=m)
    w.inbox("alice", m, "reply_received", "reply from the auto-created lead")
    # (e) Sara's address in another case; (f) plus-tagged.
    for addr, why in [("Sara.Lind@ACME-robotics.example", "address case differs from leads.csv"),
                      ("sara.lind+news@acme-robotics.example", "+tag stripped: matches sara.lind@")]:
        m = w.mail(Person("Sara Lind", addr, sara.tz, lead=sara.lead), [a], "Site visit in November",
                   "Could you visit our Västerås plant in November?")
        w.inbox("alice", m, "email_received", why)
    # (h) a thread with Alice's alias.
    n = len(w.files)
    w.conversation("alice", w.lead("alice", "kvarnbo.example"), "RLR", sender=ALICE_ALIAS)
    for f in w.files[n:]:
        f.why += " (thread with the alias a.andersson@example.com)"
    # Alice Bcc's herself: the same Message-ID in Sent and in INBOX.
    m = w.mail(a, [w.lead("alice", "fjordline.example", 1)], "Our call on Thursday",
               "Confirming our call on Thursday at 14:00.", bcc=[a])
    w.send(m, "outbound to a lead (the rep Bcc'd herself)")
    # (b) an ISO-8859-1 encoded-word subject.
    m = w.mail(w.lead("alice", "kvarnbo.example", 1), [a], "Frågor om offerten", "Två frågor, se nedan.",
               charset="iso-8859-1")
    w.inbox("alice", m, "email_received", "RFC 2047 ISO-8859-1 subject")
    # (d) a reply whose References holds 50 ids; Alice's is the 30th, In-Reply-To is someone else's.
    nl = w.lead("alice", "nordlicht.example", 1)
    m = w.mail(a, [nl], "Rollout plan for Nordlicht", "Here is the plan for your three sites.", when=w.at(a.tz, 5, 10))
    w.send(m)
    refs = [w.new_id("nordlicht.example") for _ in range(49)]
    refs.insert(29, m.mid)
    m = w.mail(nl, [a], "Re: Rollout plan for Nordlicht", "Looks good, see the long thread below.", refs=refs,
               when=w.after(m.when, nl.tz))
    w.inbox("alice", m, "reply_received", "References (50 ids) contains the rep's Message-ID")
    # (k) a German out-of-office (header and subject) answering Alice; an Outlook one by subject only.
    nl = w.lead("alice", "nordlicht.example")
    m = w.mail(a, [nl], "Angebot für Nordlicht", "As promised, the offer for your team is below.")
    w.send(m)
    m = w.mail(nl, [a], "Abwesenheitsnotiz: " + m.subject, "Ich bin bis zum 15. November nicht im Büro.",
               parent=m, extra=[("Auto-Submitted", "auto-replied")])
    w.inbox("alice", m, "auto_reply", "German out-of-office (header + subject); auto_reply beats reply_received")
    m = w.mail(w.lead("alice", "tulip-logistics.example"), [a], "Automatic reply: Tulip Logistics and your Q1 plans",
               "I am travelling until Monday with limited access to email.")
    w.inbox("alice", m, "auto_reply", "Outlook auto-reply recognised by subject only")
    # Two bounces: the lead has left. Alice's original is still email_sent.
    for domain, mx in [("acme-robotics.example", "mx01.mailrelay.example"),
                       ("hansa-maschinenbau.example", "smtp-out.eu-relay.example")]:
        gone = w.lead("alice", domain, gone=True)
        m = w.mail(a, [gone], f"Checking in, {gone.first}", "Is this still the right address to reach you?")
        w.send(m)
        w.dsn("alice", m, mx, "bounce", "DSN: Final-Recipient is a lead, 5.1.1")
    # (g) a lead plus a colleague (Chiara) in Cc. Then a reply-all that also reaches Bob.
    m = w.mail(a, [w.lead("alice", "fjordline.example")], "Shipping dashboards", "Chiara in Cc will join the call.",
               cc=[REPS["chiara"]])
    w.send(m, "outbound to a lead, a colleague in Cc")
    rl = w.lead("alice", "revontuli.example")
    m = w.mail(a, [rl], "Revontuli pilot scope", "Bob in Cc runs our US pilots.", cc=[REPS["bob"]])
    w.send(m)
    m = w.mail(rl, [a], "", "Great, we would like to include our Austin studio.", parent=m, cc=[REPS["bob"]])
    w.inbox("alice", m, "reply_received", "reply-all: answers Alice's message")
    w.inbox("bob", m, "email_received", "reply-all in Cc: the referenced message is not in Bob's Sent")
    # A lead plus a partner at a domain nobody knows: counted, only the lead is matched.
    m = w.mail(a, [w.lead("alice", "hansa-maschinenbau.example")], "Integration partner", "Ole will do the setup.",
               cc=[Person("Ole Nygaard", "ole@nordic-integrators.example", "Europe/Oslo")])
    w.send(m, "outbound to a lead; the partner in Cc is unknown")
    w.conversation("alice", w.free_mail_lead("nina."), "RLR")
    # Not activities: a colleague writes with a lead in Cc; Alice forwards a lead's mail internally;
    # a newsletter and a noreply sender at lead companies.
    m = w.mail(DAVE, [a], "Intro to Acme's CFO", "Alice, Sara is in Cc.", cc=[sara])
    w.receive(m, None, "from a colleague, even with a lead in Cc")
    m = w.mail(a, [DAVE], "Fwd: Site visit in November", "FYI, see below.\n\n---------- Forwarded message"
               " ----------\nFrom: Sara Lind <sara.lind@acme-robotics.example>")
    w.send(m, why_not="internal only (the lead is only quoted in the body)")
    w.newsletter("alice", "Acme Robotics News", "news@acme-robotics.example", "Acme Robotics News: our new gripper")
    m = w.mail(Person("Hansa Bestellportal", "noreply@hansa-maschinenbau.example", "Europe/Berlin"), [a],
               "Ihre Bestellung 48213", "Ihre Bestellung ist eingegangen.")
    w.receive(m, None, "noreply sender, even at a lead's company domain")


def bob_cases(w: World):
    b, mike = REPS["bob"], w.free_mail_lead("mike.")
    # (a) two messages without a Message-ID header.
    for frm, subject in [(w.lead("bob", "granitepeak.example"), "Store rollout question"), (mike, "Referral for you")]:
        m = w.mail(frm, [b], subject, "Sent from my phone, sorry for the brevity.", with_id=False)
        w.inbox("bob", m, "email_received", "no Message-ID header: Rapport synthesizes one")
    # (i) only a Bcc to the lead.
    m = w.mail(b, [], "Webinar invitation", "You are invited to our webinar on pipeline hygiene.",
               bcc=[w.lead("bob", "bluefin-analytics.example", 1)])
    w.send(m, "Bcc-only to a lead (Bcc header in the Sent copy)")
    # Auto-replies to Bob's messages: by subject only; by header only (the subject looks like a reply,
    # and In-Reply-To names Bob's message); by X-Autoreply only, not threaded at all.
    for domain, subject, extra, why in [
            ("prairiefoods.example", "Out of Office: {}", [], "auto-reply by subject only (Out of Office:)"),
            ("granitepeak.example", "Re: {}", [("Auto-Submitted", "auto-replied")],
             "auto-reply by Auto-Submitted only"),
            ("thames-fintech.example", "Thank you for your email", [("X-Autoreply", "yes")],
             "auto-reply by X-Autoreply only")]:
        lead = w.lead("bob", domain, 1)
        m = w.mail(b, [lead], "Pipeline visibility for your team", "Would a short call next week make sense?")
        w.send(m)
        r = w.mail(lead, [b], subject.format(m.subject), "I am out of the office until Monday.",
                   parent=m if "{}" in subject else None, extra=extra, when=w.after(m.when, lead.tz))
        w.inbox("bob", r, "auto_reply", why)
    gone = w.lead("bob", "cascade-medical.example", gone=True)
    m = w.mail(b, [gone], "Cascade Medical follow-up", "Following up on our meeting at the trade show.")
    w.send(m)
    w.dsn("bob", m, "mta7.us-relay.example", "bounce", "DSN: Final-Recipient is a lead, 5.1.1")
    # Mail to people who are not leads: not counted.
    w.send(w.mail(b, [Person("Conference Hub", "booking@conference-hub.example", "UTC")], "Booth booking",
                  "Please confirm our booth for March."))
    w.send(w.mail(b, [Person("Tom Nguyen", "t.nguyen.dev@gmail.com", "America/New_York")],
                  "Re: Question about your API", "Our API docs are at docs.example.com."),
           why_not="free-mail recipient who is not a lead")
    # A new contact at a lead's company in Cc: matched by domain, becomes a lead.
    cfo = Person("Rachel Hayes", "rhayes@bluefin-analytics.example", "America/New_York",
                 lead="rhayes@bluefin-analytics.example")
    m = w.mail(b, [w.lead("bob", "bluefin-analytics.example")], "Bluefin order form", "Adding Rachel (CFO).", cc=[cfo])
    w.send(m, "outbound to a lead and a new contact at the lead's company")
    w.conversation("bob", w.lead("bob", "granitepeak.example", 2), "RLR",
                   attachment="Granite-Peak-Outdoor-proposal.pdf")
    # A reply to a message Bob sent from his phone, which never reached his Sent folder.
    m = w.mail(w.lead("bob", "prairiefoods.example"), [b], "Re: Samples", "Got the samples, thanks!",
               refs=[w.new_id("mail.example.com")])
    w.inbox("bob", m, "email_received", "In-Reply-To names a message that is not in the rep's Sent")
    w.conversation("bob", mike, "RLRL")
    w.conversation("bob", w.free_mail_lead("dana."), "L")
    w.newsletter("bob", "Thames Fintech Events", "events@thames-fintech.example", "Save the date: Fintech breakfast",
                 bulk=True, list_id=False)
    m = w.mail(Person("Bluefin Notifications", "notifications@bluefin-analytics.example", "America/New_York"), [b],
               "Your shared dashboard was viewed", "Someone viewed your dashboard.")
    w.receive(m, None, "notifications sender at a lead's company")


def chiara_cases(w: World):
    c = REPS["chiara"]
    # (k) auto-replies in Persian and French (subject only) and Spanish (subject and X-Autoreply).
    for domain, prefix, text, extra, why in [
            ("pars-logistics.example", "پاسخ خودکار: ", "با سلام، تا تاریخ ۱۵ آبان در مرخصی هستم.", [],
             "Persian auto-reply, by subject only"),
            ("atelier-lumiere.example", "Réponse automatique : ", "Je suis absente jusqu'au 3 novembre.", [],
             "French auto-reply, by subject only"),
            ("solaris-iberica.example", "Respuesta automática: ", "Estoy fuera de la oficina hasta el lunes.",
             [("X-Autoreply", "yes")], "Spanish auto-reply (subject and X-Autoreply)")]:
        lead = w.lead("chiara", domain)
        m = w.mail(c, [lead], "Proposal for " + w.company(lead)["company"], "Please find our proposal below.")
        w.send(m)
        r = w.compose(lead, [c], prefix + m.subject, text + "\n", w.after(m.when, lead.tz), refs=[m.mid], extra=extra)
        w.inbox("chiara", r, "auto_reply", why)
    # (b) a UTF-8 encoded-word subject; (c) raw Latin-1 bytes in the Subject header.
    m = w.mail(w.lead("chiara", "helvetia-precision.example"), [c], "Rückfragen zum Angebot – Lieferzeit",
               "Wie lange dauert die Einführung?")
    w.inbox("chiara", m, "email_received", "RFC 2047 UTF-8 subject")
    m = w.mail(w.lead("chiara", "atelier-lumiere.example", 1), [c], "Réunion de suivi",
               "Pouvons-nous décaler la réunion ?", raw_subject="Réunion de suivi".encode("latin-1"))
    w.inbox("chiara", m, "email_received", "raw 8-bit Latin-1 subject (invalid UTF-8)")
    # A bounce for a lead (counted), and one for an address that is no lead (not counted).
    m = w.mail(c, [w.lead("chiara", "ferrotessile.example", gone=True)], "Campionario 2027", "Shall we meet?")
    w.send(m)
    w.dsn("chiara", m, "mx2.mailrelay.example", "bounce", "DSN: Final-Recipient is a lead, 5.1.1")
    m = w.mail(c, [Person("Trattoria Sole", "info@trattoria-sole.example", "Europe/Rome")], "Team dinner",
               "Table for 8 on Friday?")
    w.send(m)
    w.dsn("chiara", m, "mx2.mailrelay.example", None, "DSN for an address that is not a lead")
    # (g) a lead plus a colleague who is not a rep; two leads at once; a free-mail lead.
    m = w.mail(c, [w.lead("chiara", "ferrotessile.example", 1)], "Pilot kickoff", "Dave joins the kickoff.", cc=[DAVE])
    w.send(m, "outbound to a lead, a colleague in Cc")
    m = w.mail(c, [w.lead("chiara", "vigna-alta.example"), w.lead("chiara", "vigna-alta.example", 1)],
               "Harvest season reporting", "A short note to you both.")
    w.send(m, "outbound to two leads")
    w.conversation("chiara", w.free_mail_lead("marco."), "RLR")
    m = w.mail(Person("Solaris Ibérica", "donotreply@solaris-iberica.example", "Europe/Madrid"), [c],
               "Confirmación de pedido", "Gracias por su pedido.")
    w.receive(m, None, "donotreply sender at a lead's company")


def background(w: World):
    """Mail that is never an activity: internal mail, newsletters, unknown senders, one broken file."""
    a, b, c = REPS["alice"], REPS["bob"], REPS["chiara"]
    for week in (1, 4):
        m = w.mail(DAVE, [a, b, c], f"Pipeline review, week {40 + week}", "Please update your forecast by Thursday.",
                   when=w.at(DAVE.tz, 7 * week, 7 * week))
        w.receive(m, None, "from a colleague")
    for frm, to, subject in [(SUPPORT, b, "Ticket #4821: login issue at Bluefin"),
                             (ERIN, c, "Demo environment ready"), (FINANCE, b, "Commission statement October")]:
        w.receive(w.mail(frm, [to], subject, "Details in the shared folder."), None, "from a colleague")
    for frm, to, subject in [(a, [b], "Handover: Maple Leaf Freight"), (b, [c, DAVE], "Q4 forecast"),
                             (c, [a], "Can you cover my Friday call?"), (c, [ERIN], "Demo feedback"),
                             (a, [ERIN], "Sandbox for Nordlicht")]:
        w.send(w.mail(frm, to, subject, "Details in the shared folder."), why_not="internal only")
    vendors = [("SaaS Weekly", "newsletter@saasweekly.example"), ("Pipeline Digest", "digest@pipelinedigest.example"),
               ("CloudConf", "events@cloudconf.example"), ("RevOps Forum", "forum@revops-forum.example"),
               ("Nordic Sales Meetup", "hello@nordicsales.example")]
    issues = ["12 tools for sales ops", "Forecasting without spreadsheets", "Early-bird tickets end Friday",
              "New thread: attribution models", "Meetup on 12 November"]
    for i, rep in enumerate(["alice", "bob", "chiara"] * 5):
        (name, addr), issue = vendors[i % 5], issues[(i + i // 5) % 5]
        w.newsletter(rep, name, addr, f"{name}: {issue}", bulk=i % 3 == 0)
    for rep, name, addr, subject in [
            ("alice", "Kalle Svensson", "kalle.svensson88@hotmail.com", "Job application: sales development"),
            ("alice", "John Doe", "john.doe.77@outlook.com", "Your product"),
            ("bob", "Best Deals", "deals4you@yahoo.com", "Exclusive offer for your business"),
            ("bob", "Tom Nguyen", "t.nguyen.dev@gmail.com", "Question about your API"),
            ("chiara", "Lisa Meier", "lisa.meier@web.de", "Praktikum im Vertrieb?")]:
        m = w.mail(Person(name, addr, "Europe/Berlin"), [REPS[rep]], subject, "Hello, I found your address online.")
        w.receive(m, None, "free-mail sender who is not a lead")
    for rep, addr, subject in [("alice", "sam@leadgen-pros.example", "Double your pipeline"),
                               ("bob", "hello@seo-rockets.example", "Your website ranking"),
                               ("chiara", "partners@office-snacks.example", "Snacks for your office")]:
        m = w.mail(Person("Sales Team", addr, "UTC"), [REPS[rep]], subject, "Can we book 15 minutes?")
        w.receive(m, None, "unknown company domain")
    junk = bytes([0, 0x89]) + bytes(w.rng.randrange(256) for _ in range(600))
    w.files.append(Filed("bob", "INBOX", None, junk, None, "broken file: binary junk, no headers", []))


# --- calendars -------------------------------------------------------------------------------------

def ics_time(t: datetime, tz: str | None) -> str:
    """`;TZID=zone:local` for a zone, `:...Z` for UTC."""
    if tz is None:
        return ":" + t.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f";TZID={tz}:" + t.astimezone(ZoneInfo(tz)).strftime("%Y%m%dT%H%M%S")


def ics_fold(line: str) -> str:
    """RFC 5545 folding: lines longer than 75 octets continue after CRLF + space."""
    out, b = [], line.encode()
    while len(b) > 75:
        cut = 75
        while (b[cut] & 0xC0) == 0x80:  # never inside a UTF-8 sequence
            cut -= 1
        out.append(b[:cut].decode())
        b = b" " + b[cut:]
    out.append(b.decode())
    return "\r\n".join(out)


def calendars(w: World) -> list[dict]:
    """One ICS file per rep; returns what each event must become."""
    rng = random.Random(4)  # its own stream: the mail above stays byte-for-byte the same
    shutil.rmtree(CALENDARS, ignore_errors=True)
    CALENDARS.mkdir(parents=True)
    expected = []
    stamp = "20261020T120000Z"
    for rep, me in REPS.items():
        events: list[list[str]] = []
        n = 0

        def event(summary, start, minutes, people, *, kinds, why, tz=me.tz, organizer=me, extra=(),
                  declined=False, status=None):
            nonlocal n
            n += 1
            uid = f"{rep}-{n:03d}@calendar.example.com"
            lines = [f"UID:{uid}", f"DTSTAMP:{stamp}", f"CREATED:{stamp}", f"SUMMARY:{summary}",
                     "DTSTART" + ics_time(start, tz), "DTEND" + ics_time(start + timedelta(minutes=minutes), tz),
                     f"ORGANIZER;CN={organizer.name}:mailto:{organizer.addr}"]
            for p in [me] + people:
                stat = "DECLINED" if declined and p is me else "ACCEPTED"
                lines.append(f'ATTENDEE;CN="{p.name}";PARTSTAT={stat}:mailto:{p.addr}')
            if status:
                lines.append(f"STATUS:{status}")
            lines += list(extra)
            events.append(lines)
            expected.append({"rep": rep, "uid": uid, "expected": kinds, "why": why})
            return uid

        def past(first=0, last=27):
            t = START + timedelta(days=rng.randint(first, last), minutes=rng.randrange(10 * 60))
            return w.office(t, me.tz).replace(second=0, microsecond=0)

        def future():
            t = datetime(2031, 3, 3, 8, tzinfo=UTC) + timedelta(days=rng.randint(0, 60), minutes=rng.randrange(9 * 60))
            return w.office(t, me.tz).replace(second=0, microsecond=0)

        for i in range(rng.randint(4, 7)):
            lead = w.lead(rep, i=i)
            event(f"Call with {lead.name}", past(), rng.choice([30, 45, 60]), [lead], kinds=["meeting_held"],
                  why="a meeting with a lead in October: held")
        for i in range(rng.randint(2, 4)):
            lead = w.lead(rep, i=i + 3)
            event(f"Demo for {w.company(lead)['company']}", future(), 60, [lead], kinds=["meeting_booked"],
                  why="a meeting with a lead in 2031: booked")
        lead = w.lead(rep, i=1)
        event(f"Weekly check-in with {lead.name}", datetime(2026, 10, 5, 9, tzinfo=ZoneInfo(me.tz)), 30, [lead],
              kinds=["meeting_held"] * 3, why="weekly series of 4 in October, one excluded: 3 held",
              tz=None if rep == "bob" else me.tz,
              extra=["RRULE:FREQ=WEEKLY;COUNT=4",
                     "EXDATE" + ics_time(datetime(2026, 10, 12, 9, tzinfo=ZoneInfo(me.tz)), None if rep == "bob" else me.tz)])
        lead = w.lead(rep, i=2)
        first = datetime(2031, 5, 6, 15, tzinfo=ZoneInfo(me.tz))
        uid = event(f"Onboarding with {lead.name}", first, 60, [lead], kinds=["meeting_booked"] * 3,
                    why="weekly series of 3 in 2031, the second moved by an hour: 3 booked",
                    extra=["RRULE:FREQ=WEEKLY;COUNT=3"])
        events.append([f"UID:{uid}", f"DTSTAMP:{stamp}", "RECURRENCE-ID" + ics_time(first + timedelta(days=7), me.tz),
                       "DTSTART" + ics_time(first + timedelta(days=7, hours=1), me.tz),
                       "DTEND" + ics_time(first + timedelta(days=7, hours=2), me.tz),
                       f"SUMMARY:Onboarding with {lead.name} (moved)"])
        n += 1
        visit = f"{rep}-{n:03d}@calendar.example.com"
        events.append([f"UID:{visit}", f"DTSTAMP:{stamp}", "DTSTART;VALUE=DATE:20261014",
                       f"SUMMARY:Site visit at {w.company(lead)['company']}",
                       f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{me.addr}", f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:{lead.addr}"])
        expected.append({"rep": rep, "uid": visit, "expected": ["meeting_held"],
                         "why": "an all-day visit without DTEND in October: held"})
        lead = w.lead(rep, i=4)
        event(f"Intro with {lead.name}", past(), 30, [lead], kinds=[], organizer=lead, declined=True,
              why="the rep declined: not held")
        event("Pipeline review", past(), 60, [DAVE, ERIN], kinds=[], why="internal only: no lead")
        stranger = Person("Pat Random", f"pat.random{rng.randrange(100)}@yahoo.com", "UTC")
        event("Coffee", past(), 30, [stranger], kinds=[], why="a free-mail guest who is no lead")
        lead = w.lead(rep, i=5)
        event(f"Follow-up with {lead.name}", future(), 30, [lead], kinds=[], status="CANCELLED",
              why="cancelled before it was ever seen: nothing")
        broken = {"alice": ("DTSTART;TZID=Mars/Olympus:20261015T100000", "an unknown TZID: skipped"),
                  "bob": ("SUMMARY:no start at all", "no DTSTART: skipped"),
                  "chiara": ("DTSTART;TZID=Europe/Rome:2026-10-15", "a malformed date: skipped")}[rep]
        n += 1
        events.append([f"UID:{rep}-{n:03d}@calendar.example.com", f"DTSTAMP:{stamp}", broken[0],
                       f"ATTENDEE:mailto:{w.lead(rep, i=0).addr}"])
        expected.append({"rep": rep, "uid": f"{rep}-{n:03d}@calendar.example.com", "expected": [], "why": broken[1]})
        body = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:-//Example Inc.//{me.name}//EN", "CALSCALE:GREGORIAN"]
        for lines in events:
            body += ["BEGIN:VEVENT"] + lines + ["END:VEVENT"]
        body.append("END:VCALENDAR")
        text = "\r\n".join(ics_fold(l) for l in body) + "\r\n"
        # Chiara's calendar app writes a byte-order mark.
        (CALENDARS / f"{rep}.ics").write_bytes(("\ufeff" if rep == "chiara" else "").encode() + text.encode())
    return expected


# --- writing it out --------------------------------------------------------------------------------

def generate() -> dict:
    w = World()
    for rep in REPS:
        regular_traffic(w, rep, 36)
    alice_cases(w), bob_cases(w), chiara_cases(w), background(w)
    shutil.rmtree(MAIL, ignore_errors=True)
    for rep in REPS:
        for sub in ("cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"):
            (MAIL / rep / sub).mkdir(parents=True)
        # The three newest INBOX messages are unseen: in new/, without the ":2," suffix.
        inbox = sorted((f for f in w.files if f.rep == rep and f.folder == "INBOX" and f.msg), key=lambda f: f.msg.when)
        unseen = {id(f) for f in inbox[-3:]}
        for f in (f for f in w.files if f.rep == rep):
            t = int((f.msg.when if f.msg else END).timestamp())
            unique = f"{t}.M{w.rng.randrange(10**6)}P{w.rng.randrange(1000, 65000)}.mail.example.com"
            folder = "" if f.folder == "INBOX" else ".Sent/"
            f.file = f"mail/{rep}/{folder}new/{unique}" if id(f) in unseen else f"mail/{rep}/{folder}cur/{unique}:2,S"
            assert not (OUT / f.file).exists()
            (OUT / f.file).write_bytes(f.raw)
    for d in sorted(MAIL.rglob("*")):
        if d.is_dir() and not any(d.iterdir()):
            (d / ".gitkeep").touch()
    with open(OUT / "leads.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["email", "first_name", "last_name", "company", "owner", "time_zone", "status", "industry"])
        out.writerows([l.email, l.first, l.last, l.company, l.owner, l.tz, l.status, l.industry] for l in w.leads)
    messages = [{"rep": f.rep, "folder": f.folder, "file": f.file, "message_id": f.msg.mid if f.msg else None,
                 "expected": f.expected, "why": f.why, "leads": f.leads}
                for f in sorted(w.files, key=lambda f: (f.rep, f.folder, f.file))]
    meetings = calendars(w)
    doc = {"generator": "scripts/gen-example-data.py", "files_relative_to": "config/example",
           **summarize(messages, {l.email for l in w.leads}, meetings), "messages": messages,
           "meetings": meetings}
    (OUT / "expected.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return doc


def summarize(messages: list[dict], lead_emails: set[str], meetings: list[dict]) -> dict:
    """Totals per rep, counting each (rep, kind, Message-ID) once, and each meeting occurrence
    once per kind; bounced and auto-created leads."""
    counted = [m for m in messages if m["expected"]]
    keys = {(m["rep"], m["expected"], m["message_id"] or m["file"]) for m in counted}
    per_rep = {rep: {k: sum(1 for r, kind, _ in keys if (r, kind) == (rep, k)) for k in KINDS} for rep in REPS}
    for rep in REPS:
        for k in MEETING_KINDS:
            per_rep[rep][k] = sum(m["expected"].count(k) for m in meetings if m["rep"] == rep)
    return {"per_rep": per_rep,
            "bounced_addresses": sorted({a for m in counted if m["expected"] == "bounce" for a in m["leads"]}),
            "auto_created_leads": sorted({a for m in counted for a in m["leads"]} - lead_emails)}


# --- the independent checker -----------------------------------------------------------------------

def classify(msg, own: set[str], sent_ids: set[str], leads: set[str], free: set[str]):
    """Rapport's rules for one parsed message in one rep's mailbox: (kind or None, matched leads)."""
    companies = {a.split("@")[1] for a in leads} - free

    def addresses(*headers):
        values = [str(v) for h in headers for v in msg.get_all(h, [])]
        return [a.strip().lower() for _, a in getaddresses(values) if "@" in a]

    def internal(a):
        return a.split("@")[1] == INTERNAL or a.split("@")[1].endswith("." + INTERNAL)

    def match(a):  # exact address, then without +tag, then by company domain (a new lead)
        local, domain = a.rsplit("@", 1)
        base = f"{local.split('+', 1)[0] or local}@{domain}"
        return a if a in leads else base if base in leads or domain in companies else None

    def matched(addrs):
        return list(dict.fromkeys(m for a in addrs if not internal(a) and (m := match(a))))

    sender = (addresses("From") or [None])[0]
    if sender is None:  # not a message at all
        return None, []
    if sender in own:
        found = matched(addresses("To", "Cc", "Bcc"))
        return ("email_sent", found) if found else (None, [])
    if internal(sender):
        return None, []
    if msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "delivery-status":
        for part in msg.walk():
            if part.get_content_type() == "message/delivery-status":
                for block in part.get_payload():
                    final = str(block.get("Final-Recipient", "")).split(";")[-1].strip().lower()
                    if final in leads and str(block.get("Action", "")).strip().lower() == "failed":
                        return "bounce", [final]
        return None, []
    if msg.get("List-Id") or str(msg.get("Precedence", "")).strip().lower() in ("bulk", "list", "junk"):
        return None, []
    if sender.split("@")[0].split("+")[0] in NOREPLY or not match(sender):
        return None, []
    found = matched([sender] + addresses("To", "Cc"))
    subject = str(make_header(decode_header(msg.get("Subject", "")))).strip().lower()
    if (str(msg.get("Auto-Submitted", "")).split(";")[0].strip().lower() in ("auto-replied", "auto-generated")
            or str(msg.get("X-Autoreply", "")).strip().lower() == "yes"
            or any(subject.startswith(p.lower()) for p in AUTO_SUBJECTS)):
        return "auto_reply", found
    if set(re.findall(r"<[^>]+>", f"{msg.get('In-Reply-To', '')} {msg.get('References', '')}")) & sent_ids:
        return "reply_received", found
    return "email_received", found


def derive_meetings(leads: set[str], free: set[str]) -> list[dict]:
    """Rapport's meeting rules, re-applied to the ICS files with a reader of their own: held before
    2027, booked after; nothing when cancelled, declined by the rep, or with no lead; a series
    counts COUNT minus its EXDATEs; events without a readable DTSTART are skipped."""
    companies = {a.split("@")[1] for a in leads} - free
    out = []
    for path in sorted(CALENDARS.glob("*.ics")):
        rep = path.stem
        text = path.read_bytes().decode("utf-8-sig").replace("\r\n ", "")
        for block in re.findall(r"BEGIN:VEVENT\r\n(.*?)END:VEVENT", text, re.S):
            props = [(l.split(":", 1)[0], l.split(":", 1)[1]) for l in block.split("\r\n") if ":" in l]
            get = lambda name: [v for k, v in props if k.split(";")[0] == name]
            if get("RECURRENCE-ID"):
                continue
            uid, kinds = get("UID")[0], []
            start = next((k + ":" + v for k, v in props if k.split(";")[0] == "DTSTART"), None)
            m = re.match(r"DTSTART(?:;TZID=([^:;]+)|;VALUE=DATE)?:(\d{8})(T\d{6}Z?)?$", start or "")
            try:
                ok = m is not None and (m.group(1) is None or ZoneInfo(m.group(1)) is not None)
            except Exception:
                ok = False
            if ok:
                people = [v.lower().removeprefix("mailto:") for k, v in props if k.split(";")[0] in ("ATTENDEE", "ORGANIZER")]
                declined = any(v.lower().removeprefix("mailto:") in OWN[rep] and "PARTSTAT=DECLINED" in k
                               for k, v in props if k.startswith("ATTENDEE"))
                lead = any(a in leads or a.split("@")[1] in companies for a in people if a not in OWN[rep]
                           and a.split("@")[1] != INTERNAL)
                n = int(re.search(r"COUNT=(\d+)", " ".join(get("RRULE")) or "COUNT=1").group(1)) - len(get("EXDATE"))
                if lead and not declined and "CANCELLED" not in get("STATUS"):
                    kinds = ["meeting_held" if m.group(2) < "2027" else "meeting_booked"] * n
            out.append({"rep": rep, "uid": uid, "expected": kinds})
    return out


def check_targets() -> list[str]:
    """The example's targets file names only teams and reps of config/example.yaml, and that
    config names the targets file (an earlier attempt shipped a target for a team nobody was in)."""
    config = (OUT.parent / "example.yaml").read_text(encoding="utf-8")
    targets_file = OUT / "targets.yaml"
    if "targets_file: example/targets.yaml" not in config:
        return ["config/example.yaml does not name example/targets.yaml as its targets_file"]
    teams = set(re.findall(r"^\s+team:\s*(\S+)", config, re.M))
    reps = set(re.findall(r"^\s+- id:\s*(\S+)", config, re.M)) & set(REPS)
    problems = []
    for n, line in enumerate(targets_file.read_text(encoding="utf-8").splitlines(), 1):
        m = re.match(r"^\s*- (team|rep):\s*(\S+)", line)
        if m and m[2] not in (teams if m[1] == "team" else reps):
            problems.append(f"example/targets.yaml:{n}: {m[1]} `{m[2]}` is not in config/example.yaml")
    if not teams or not re.search(r"^\s*- team:", targets_file.read_text(encoding="utf-8"), re.M):
        problems.append("example/targets.yaml sets no team targets, or config/example.yaml has no teams")
    return problems


def check() -> bool:
    doc = json.loads((OUT / "expected.json").read_text(encoding="utf-8"))
    with open(OUT / "leads.csv", newline="", encoding="utf-8") as fh:
        leads = {row["email"].lower() for row in csv.DictReader(fh)}
    free = {"gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "web.de"}
    if FREE_MAIL_LIST.exists():  # Rapport's own list, when run inside the repository
        free = {l.strip() for l in FREE_MAIL_LIST.read_text().splitlines() if l.strip() and l[0] != "#"}
    recorded = {m["file"]: m for m in doc["messages"]}
    on_disk = {str(p.relative_to(OUT)) for p in MAIL.rglob("*") if p.is_file() and not p.name.startswith(".")}
    problems = [f"{f}: on disk, not in expected.json" for f in sorted(on_disk - recorded.keys())]
    problems += [f"{f}: in expected.json, not on disk" for f in sorted(recorded.keys() - on_disk)]
    derived = []
    for rep in REPS:
        files = {f: (OUT / f).read_bytes() for f in sorted(on_disk) if f.startswith(f"mail/{rep}/")}
        parsed = {f: message_from_bytes(raw, policy=policy.compat32) for f, raw in files.items()}
        sent_ids = {str(m["Message-ID"]).strip() for f, m in parsed.items()
                    if f.startswith(f"mail/{rep}/.Sent/") and m["Message-ID"]
                    and getaddresses([str(m["From"])])[0][1].lower() in OWN[rep]}
        for f, m in parsed.items():
            kind, found = classify(m, OWN[rep], sent_ids, leads, free)
            mid = str(m["Message-ID"]).strip() if m["Message-ID"] else None
            derived.append({"rep": rep, "file": f, "message_id": mid, "expected": kind, "leads": found})
            want = recorded.get(f)
            if want and (want["expected"], sorted(want["leads"]), want["message_id"]) != (kind, sorted(found), mid):
                problems.append(f"{f}: recorded {want['expected']} {want['leads']}, rules say {kind} {found}"
                                f" ({want['why']})")
            if m["Date"]:  # the sender's local date
                day = datetime.strptime(" ".join(str(m["Date"]).split()[1:4]), "%d %b %Y").date()
                if not date(2026, 10, 1) <= day <= date(2026, 11, 27):
                    problems.append(f"{f}: Date {m['Date']} is outside Oct 1 – Nov 27 2026")
            if m["From"] and re.search(rb"(?<!\r)\n", files[f]):
                problems.append(f"{f}: a line ends in a bare LF, not CRLF")
    meetings = derive_meetings(leads, free)
    recorded_meetings = {(m["rep"], m["uid"]): sorted(m["expected"]) for m in doc.get("meetings", [])}
    for m in meetings:
        want = recorded_meetings.pop((m["rep"], m["uid"]), None)
        if want != sorted(m["expected"]):
            problems.append(f"meeting {m['uid']}: recorded {want}, the rules give {m['expected']}")
    problems += [f"meeting {uid}: in expected.json, not in {rep}.ics" for rep, uid in recorded_meetings]
    problems += check_targets()
    summary = summarize(derived, leads, meetings)
    for key in ("per_rep", "bounced_addresses", "auto_created_leads"):
        if summary[key] != doc[key]:
            problems.append(f"{key}: expected.json has {doc[key]}, the rules give {summary[key]}")
    for p in problems:
        print("MISMATCH", p, file=sys.stderr)
    print(f"checked {len(on_disk)} message files: {'OK' if not problems else f'{len(problems)} problems'}")
    return not problems


if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["--check"]):
        sys.exit(__doc__)
    if not sys.argv[1:]:
        doc = generate()
        print(f"wrote {len(doc['messages'])} message files; counted per rep: {json.dumps(doc['per_rep'])}")
    sys.exit(0 if check() else 1)
