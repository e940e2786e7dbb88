//! Dialects: what no public source settles about a vendor's API (the ledgers' "Guesses that remain",
//! docs/vendors/<vendor>.md), as settings a simulator is started with, so tests can vary each guess.
//! The default dialect is the simulator's usual behaviour.

use std::collections::BTreeMap;

/// The settings each vendor's simulator has so far.
fn settings(vendor: &str) -> &'static [&'static str] {
    match vendor {
        "alegion" => &["page_cap"],
        _ => &[],
    }
}

/// A setting's value as given (a whole number, a word or a switch).
#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    Number(u64),
    Word(String),
    Switch(bool),
}

/// The settings a simulator was started with; empty: the default dialect.
#[derive(Clone, Debug, Default)]
pub struct Dialect {
    settings: BTreeMap<String, Setting>,
}

impl Dialect {
    pub fn set(mut self, name: &str, value: Setting) -> Dialect {
        self.settings.insert(name.to_string(), value);
        self
    }

    /// Every setting must exist for `vendor`; the error names the ones that do.
    pub fn validate(&self, vendor: &str) -> Result<(), String> {
        let known = settings(vendor);
        for (name, value) in &self.settings {
            if !known.contains(&name.as_str()) {
                let have = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(format!(
                    "unknown dialect setting {name:?} for the {vendor} sandbox (settings: {have})"
                ));
            }
            if name == "page_cap" && !matches!(value, Setting::Number(n) if *n >= 1) {
                return Err(format!(
                    "dialect setting page_cap must be a whole number of at least 1, got {value:?}"
                ));
            }
        }
        Ok(())
    }

    /// The most items a page holds whatever the client asks (`None`: the vendor's own cap).
    pub fn page_cap(&self) -> Option<u64> {
        match self.settings.get("page_cap") {
            Some(Setting::Number(n)) => Some(*n),
            _ => None,
        }
    }
}
