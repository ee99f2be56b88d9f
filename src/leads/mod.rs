//! Importing leads from CSV: a header row maps columns, every bad row is reported by number
//! and reason, and the good rows are upserted regardless.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::address;
use crate::config::Config;
use crate::matcher::{DomainClass, DomainRules};
use crate::store::{LeadColumns, NewLead, Store, UpsertCounts};

/// A CSV row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// 1-based row number as a spreadsheet shows it (the header is row 1).
    pub row: u64,
    /// 1-based line in the file where the row starts (differs from `row` after multi-line cells).
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for RejectedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.row == self.line {
            write!(f, "row {}: {}", self.row, self.reason)
        } else {
            write!(f, "row {} (line {}): {}", self.row, self.line, self.reason)
        }
    }
}

/// The outcome of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub counts: UpsertCounts,
    pub rejected: Vec<RejectedRow>,
}

/// The leads read from a CSV file, before they reach the store.
#[derive(Debug, Clone, Default)]
pub struct ParsedLeads {
    pub leads: Vec<NewLead>,
    pub columns: LeadColumns,
    pub rejected: Vec<RejectedRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Email,
    Name,
    FirstName,
    LastName,
    Company,
    Owner,
    TimeZone,
    Status,
    Attribute,
}

fn normalize_header(h: &str) -> String {
    h.trim()
        .trim_start_matches('\u{feff}')
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect::<String>()
        .trim_matches('_')
        .to_owned()
}

fn field_of(header: &str) -> Field {
    match header {
        "email" | "e_mail" | "email_address" | "mail" => Field::Email,
        "name" | "full_name" | "contact" | "contact_name" => Field::Name,
        "first_name" | "firstname" | "given_name" => Field::FirstName,
        "last_name" | "lastname" | "surname" | "family_name" => Field::LastName,
        "company" | "company_name" | "organization" | "organisation" | "account" => Field::Company,
        "owner" | "owner_rep" | "rep" | "owner_id" => Field::Owner,
        "time_zone" | "timezone" | "tz" => Field::TimeZone,
        "status" | "lead_status" => Field::Status,
        _ => Field::Attribute,
    }
}

/// What a row is checked against.
pub struct ImportRules<'a> {
    pub domains: &'a DomainRules,
    pub rep_ids: HashSet<&'a str>,
}

impl<'a> ImportRules<'a> {
    pub fn from_config(config: &'a Config, domains: &'a DomainRules) -> Self {
        ImportRules {
            domains,
            rep_ids: config.reps.iter().map(|r| r.id.as_str()).collect(),
        }
    }
}

/// Reads leads from CSV text. Fails as a whole only when the header is unusable.
pub fn parse_csv(input: impl Read, rules: &ImportRules<'_>) -> Result<ParsedLeads> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers: Vec<String> = rdr
        .headers()
        .context("reading the header row")?
        .iter()
        .map(normalize_header)
        .collect();
    let fields: Vec<Field> = headers.iter().map(|h| field_of(h)).collect();
    let Some(email_col) = fields.iter().position(|f| *f == Field::Email) else {
        bail!(
            "row 1: the header has no email column (found: {}); name one column `email`",
            headers.join(", ")
        );
    };
    let has = |f: Field| fields.contains(&f);
    let columns = LeadColumns {
        name: has(Field::Name) || has(Field::FirstName) || has(Field::LastName),
        company: has(Field::Company),
        owner: has(Field::Owner),
        time_zone: has(Field::TimeZone),
        status: has(Field::Status),
        attributes: has(Field::Attribute),
    };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut out = ParsedLeads {
        columns,
        ..Default::default()
    };
    let mut record = csv::StringRecord::new();
    let mut row: u64 = 1;
    loop {
        row += 1;
        let line = rdr.position().line();
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                out.rejected.push(RejectedRow {
                    row,
                    line,
                    reason: format!("unreadable CSV: {e}"),
                });
                continue;
            }
        }
        if record.iter().all(str::is_empty) {
            continue;
        }
        let reject = |reason: String| RejectedRow { row, line, reason };
        if record.len() < headers.len() {
            out.rejected.push(reject(format!(
                "missing column(s): the row has {} fields, the header {}",
                record.len(),
                headers.len()
            )));
            continue;
        }
        if record.len() > headers.len() {
            out.rejected.push(reject(format!(
                "too many fields: the row has {}, the header {}",
                record.len(),
                headers.len()
            )));
            continue;
        }
        let email = match address::normalize(&record[email_col]) {
            Ok(e) => e,
            Err(e) => {
                out.rejected.push(reject(format!("bad address: {e}")));
                continue;
            }
        };
        if let Some(first) = seen.get(&email) {
            out.rejected
                .push(reject(format!("duplicate in file: {email} is already on row {first}")));
            continue;
        }
        let domain = address::domain_of(&email);
        let company_domain = match rules.domains.classify(domain) {
            DomainClass::Internal => {
                out.rejected
                    .push(reject(format!("{email} is an internal address, not a lead")));
                continue;
            }
            DomainClass::Company => Some(domain.to_owned()),
            DomainClass::FreeMail | DomainClass::Blocked => None,
        };
        let mut lead = NewLead {
            email: email.clone(),
            name: None,
            company_name: None,
            company_domain,
            owner_rep: None,
            time_zone: None,
            status: None,
            attributes: Default::default(),
        };
        let (mut first, mut last) = (None, None);
        let mut problem = None;
        for ((value, field), header) in record.iter().zip(&fields).zip(&headers) {
            let value = (!value.is_empty()).then(|| value.to_owned());
            match field {
                Field::Email => {}
                Field::Name => lead.name = value,
                Field::FirstName => first = value,
                Field::LastName => last = value,
                Field::Company => lead.company_name = value,
                Field::Owner => {
                    if let Some(v) = &value
                        && !rules.rep_ids.contains(v.as_str())
                    {
                        problem = Some(format!("unknown owner rep `{v}`"));
                    }
                    lead.owner_rep = value;
                }
                Field::TimeZone => {
                    if let Some(v) = &value
                        && v.parse::<chrono_tz::Tz>().is_err()
                    {
                        problem = Some(format!("unknown time zone `{v}`"));
                    }
                    lead.time_zone = value;
                }
                Field::Status => lead.status = value.map(|s| s.to_lowercase()),
                Field::Attribute => {
                    if let Some(v) = value
                        && !header.is_empty()
                    {
                        lead.attributes.insert(header.clone(), serde_json::Value::String(v));
                    }
                }
            }
        }
        if let Some(p) = problem {
            out.rejected.push(reject(p));
            continue;
        }
        if lead.name.is_none() {
            lead.name = match (first, last) {
                (Some(f), Some(l)) => Some(format!("{f} {l}")),
                (Some(f), None) => Some(f),
                (None, Some(l)) => Some(l),
                (None, None) => None,
            };
        }
        seen.insert(email, row);
        out.leads.push(lead);
    }
    Ok(out)
}

/// Imports a CSV file into the store.
pub async fn import_file(store: &Store, config: &Config, path: &Path) -> Result<ImportReport> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let domains = DomainRules::from_config(config);
    let rules = ImportRules::from_config(config, &domains);
    let parsed = parse_csv(std::io::BufReader::new(file), &rules).with_context(|| format!("{}", path.display()))?;
    let counts = store.upsert_leads(&parsed.leads, parsed.columns).await?;
    Ok(ImportReport {
        counts,
        rejected: parsed.rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> (DomainRules, HashSet<&'static str>) {
        (
            DomainRules::new(&["example.com".into()], &[], &[]),
            ["alice", "bob"].into(),
        )
    }

    fn parse(text: &str) -> ParsedLeads {
        let (d, reps) = rules();
        let r = ImportRules {
            domains: &d,
            rep_ids: reps,
        };
        parse_csv(text.as_bytes(), &r).unwrap()
    }

    #[test]
    fn maps_known_columns_and_keeps_the_rest_as_attributes() {
        let p =
            parse("Email,First Name,Last Name,Company,Owner,Industry\nSara@Acme.example,Sara,Lind,Acme,alice,Steel\n");
        assert!(p.rejected.is_empty(), "{:?}", p.rejected);
        let l = &p.leads[0];
        assert_eq!(l.email, "sara@acme.example");
        assert_eq!(l.name.as_deref(), Some("Sara Lind"));
        assert_eq!(l.company_name.as_deref(), Some("Acme"));
        assert_eq!(l.company_domain.as_deref(), Some("acme.example"));
        assert_eq!(l.owner_rep.as_deref(), Some("alice"));
        assert_eq!(l.attributes["industry"], "Steel");
        assert!(p.columns.name && p.columns.company && p.columns.owner && p.columns.attributes);
        assert!(!p.columns.status && !p.columns.time_zone);
    }

    #[test]
    fn every_bad_row_is_named_and_good_rows_survive() {
        let p = parse(
            "email,name,owner\n\
             ok@acme.example,Ok,alice\n\
             not-an-address,X,alice\n\
             OK@acme.example,Dup,alice\n\
             short@acme.example\n\
             who@acme.example,W,mallory\n\
             colleague@example.com,C,bob\n\
             free@gmail.com,F,bob\n",
        );
        let reasons: Vec<String> = p.rejected.iter().map(ToString::to_string).collect();
        assert_eq!(p.leads.len(), 2, "{reasons:?}");
        assert_eq!(p.leads[1].company_domain, None, "free-mail has no company");
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].starts_with("row 3: bad address"), "{reasons:?}");
        assert!(reasons[1].starts_with("row 4: duplicate in file"), "{reasons:?}");
        assert!(reasons[1].contains("row 2"), "{reasons:?}");
        assert!(reasons[2].starts_with("row 5: missing column"), "{reasons:?}");
        assert!(reasons[3].contains("unknown owner rep `mallory`"), "{reasons:?}");
        assert!(reasons[4].contains("internal address"), "{reasons:?}");
    }

    #[test]
    fn multi_line_cells_report_row_and_line() {
        let p = parse("email,notes\na@acme.example,\"two\nlines\"\nbad,x\n");
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].row, 3);
        assert_eq!(p.rejected[0].line, 4);
        assert!(p.rejected[0].to_string().starts_with("row 3 (line 4):"));
    }

    #[test]
    fn header_without_email_fails_whole_file() {
        let (d, reps) = rules();
        let r = ImportRules {
            domains: &d,
            rep_ids: reps,
        };
        let err = parse_csv("name,company\nx,y\n".as_bytes(), &r).unwrap_err();
        assert!(err.to_string().contains("no email column"), "{err}");
    }

    #[test]
    fn bom_and_blank_lines_are_tolerated() {
        let p = parse("\u{feff}email\n\na@acme.example\n\n");
        assert_eq!(p.leads.len(), 1);
        assert!(p.rejected.is_empty());
    }
}
