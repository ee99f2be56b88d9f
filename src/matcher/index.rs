//! The in-memory lookup the matcher uses: lead ids by address, company ids by domain.

use foldhash::HashMap;

/// Leads and companies, as loaded from the store.
#[derive(Debug, Clone, Default)]
pub struct LeadIndex {
    leads: HashMap<String, i64>,
    companies: HashMap<String, i64>,
}

impl LeadIndex {
    pub fn new(
        leads: impl IntoIterator<Item = (String, i64)>,
        companies: impl IntoIterator<Item = (String, i64)>,
    ) -> Self {
        LeadIndex {
            leads: leads.into_iter().collect(),
            companies: companies.into_iter().collect(),
        }
    }

    /// The lead with this (normalized) address.
    pub fn lead(&self, address: &str) -> Option<i64> {
        self.leads.get(address).copied()
    }

    /// The company that owns this domain.
    pub fn company(&self, domain: &str) -> Option<i64> {
        self.companies.get(domain).copied()
    }

    pub fn add_lead(&mut self, address: String, id: i64) {
        self.leads.insert(address, id);
    }

    pub fn add_company(&mut self, domain: String, id: i64) {
        self.companies.insert(domain, id);
    }

    pub fn lead_count(&self) -> usize {
        self.leads.len()
    }
}
