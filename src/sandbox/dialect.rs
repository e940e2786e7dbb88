//! Dialects: what no public source settles about a vendor's API (the ledgers' "Guesses that remain",
//! docs/vendors/<vendor>.md), as settings a simulator is started with, so tests can vary each guess.
//! The default dialect is the simulator's usual behaviour. Each simulator declares its own settings
//! (`DIALECT` in its module); this file only validates and reads them.

use std::collections::BTreeMap;

/// What values a setting takes.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A whole number of at least `min`.
    Number { min: u64 },
    /// On or off.
    Switch,
    /// One of these words.
    Word(&'static [&'static str]),
}

/// A setting's value in a declaration (`changed`: the value the all-changed combination uses).
#[derive(Clone, Copy, Debug)]
pub enum Value {
    Number(u64),
    Switch(bool),
    Word(&'static str),
}

/// One setting a simulator understands.
#[derive(Clone, Copy, Debug)]
pub struct SettingSpec {
    pub name: &'static str,
    pub kind: Kind,
    /// The value that differs most from the default, used when every setting is changed at once.
    pub changed: Value,
    /// What it varies and which ledger guess it stands for.
    pub doc: &'static str,
}

/// The settings each vendor's simulator has.
pub fn settings(vendor: &str) -> &'static [SettingSpec] {
    match vendor {
        "alegion" => super::alegion::DIALECT,
        "deepen" => super::deepen::DIALECT,
        "playment" => super::playment::DIALECT,
        "sama" => super::sama::DIALECT,
        "taskmonk" => super::taskmonk::DIALECT,
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

impl From<Value> for Setting {
    fn from(v: Value) -> Setting {
        match v {
            Value::Number(n) => Setting::Number(n),
            Value::Switch(b) => Setting::Switch(b),
            Value::Word(w) => Setting::Word(w.to_string()),
        }
    }
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

    /// Every setting of `vendor` at its `changed` value, but the `drop_*` ones (they remove what a client
    /// sends, so a round trip must fail under them).
    pub fn all_changed(vendor: &str) -> Dialect {
        settings(vendor)
            .iter()
            .filter(|s| !s.name.starts_with("drop_"))
            .fold(Dialect::default(), |d, s| d.set(s.name, s.changed.into()))
    }

    /// Every setting must exist for `vendor` and hold a value of its kind; the error names what does.
    pub fn validate(&self, vendor: &str) -> Result<(), String> {
        let known = settings(vendor);
        for (name, value) in &self.settings {
            let Some(spec) = known.iter().find(|s| s.name == name) else {
                let have = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                };
                return Err(format!(
                    "unknown dialect setting {name:?} for the {vendor} sandbox (settings: {have})"
                ));
            };
            let fits = match (spec.kind, value) {
                (Kind::Number { min }, Setting::Number(n)) => *n >= min,
                (Kind::Switch, Setting::Switch(_)) => true,
                (Kind::Word(words), Setting::Word(w)) => words.contains(&w.as_str()),
                _ => false,
            };
            if !fits {
                let want = match spec.kind {
                    Kind::Number { min } => format!("a whole number of at least {min}"),
                    Kind::Switch => "true or false".to_string(),
                    Kind::Word(words) => format!("one of {}", words.join(", ")),
                };
                return Err(format!(
                    "dialect setting {name} must be {want}, got {value:?}"
                ));
            }
        }
        Ok(())
    }

    pub fn number(&self, name: &str) -> Option<u64> {
        match self.settings.get(name) {
            Some(Setting::Number(n)) => Some(*n),
            _ => None,
        }
    }

    /// Off unless set.
    pub fn switch(&self, name: &str) -> bool {
        matches!(self.settings.get(name), Some(Setting::Switch(true)))
    }

    pub fn word(&self, name: &str) -> Option<&str> {
        match self.settings.get(name) {
            Some(Setting::Word(w)) => Some(w),
            _ => None,
        }
    }

    /// The most items a page holds whatever the client asks (`None`: the vendor's own cap).
    pub fn page_cap(&self) -> Option<u64> {
        self.number("page_cap")
    }
}

/// The `page_cap` setting, for every simulator whose listings take a page size.
pub const PAGE_CAP: SettingSpec = SettingSpec {
    name: "page_cap",
    kind: Kind::Number { min: 1 },
    changed: Value::Number(250),
    doc: "the most items a page holds, whatever page size the client asks for (a server capping below it)",
};

/// A vendor's settings as plain data (`lp.sandbox.dialect_settings`): name, kind, changed value, doc.
pub fn describe(vendor: &str) -> serde_json::Value {
    let value = |v: Value| match v {
        Value::Number(n) => serde_json::json!(n),
        Value::Switch(b) => serde_json::json!(b),
        Value::Word(w) => serde_json::json!(w),
    };
    settings(vendor)
        .iter()
        .map(|s| {
            let kind = match s.kind {
                Kind::Number { min } => serde_json::json!({"number": {"min": min}}),
                Kind::Switch => serde_json::json!("switch"),
                Kind::Word(words) => serde_json::json!({"word": words}),
            };
            serde_json::json!({"name": s.name, "kind": kind, "changed": value(s.changed), "doc": s.doc})
        })
        .collect()
}
