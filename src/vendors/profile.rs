//! Profiles: named `[profiles.NAME]` tables in a TOML file, the lowest layer of a client's configuration
//! (keyword argument > `LABELPORT_<VENDOR>_<NAME>` environment variable > profile).
//!
//! ```toml
//! [profiles.prod]
//! vendor = "sama"
//! project = "117"
//! api_key_env = "SAMA_PROD_KEY"     # NAME_env = "VAR": the value of NAME comes from the variable VAR
//! key_field = "image_id"            # client options by name, as keyword arguments take them
//! ```
//!
//! The file is `LABELPORT_CONFIG` if set, else `$XDG_CONFIG_HOME/labelport/config.toml`, else
//! `~/.config/labelport/config.toml`. It is read only when a profile is asked for (`profile=` or
//! `LABELPORT_PROFILE`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::{Error, Result};

use super::spec::SPECS;

/// Where a profile value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileValue {
    /// Written in the file.
    Literal(serde_json::Value),
    /// `NAME_env = "VAR"`: read from the environment variable VAR.
    FromEnv(String),
}

/// One `[profiles.NAME]` table.
#[derive(Clone)]
pub struct Profile {
    pub name: String,
    pub file: PathBuf,
    pub vendor: Option<String>,
    /// Every other key (project, base_url, credentials, options), `_env` suffix removed.
    pub values: BTreeMap<String, ProfileValue>,
}

impl std::fmt::Debug for Profile {
    // Values may be secrets: show names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("vendor", &self.vendor)
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Profile {
    /// Where this profile is, for messages: `profile "prod" in /home/me/.config/labelport/config.toml`.
    pub fn describe(&self) -> String {
        format!("profile {:?} in {}", self.name, self.file.display())
    }
}

/// The profile file: `LABELPORT_CONFIG`, else `$XDG_CONFIG_HOME/labelport/config.toml`, else
/// `$HOME/.config/labelport/config.toml`.
pub fn config_path(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(p) = set("LABELPORT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = set("XDG_CONFIG_HOME") {
        return Some(Path::new(&x).join("labelport").join("config.toml"));
    }
    set("HOME").map(|h| {
        Path::new(&h)
            .join(".config")
            .join("labelport")
            .join("config.toml")
    })
}

/// Reads profile `name` from the profile file; also returns warnings for the user (a file others can read
/// while it holds a secret).
pub fn load(name: &str, env: &impl Fn(&str) -> Option<String>) -> Result<(Profile, Vec<String>)> {
    let Some(file) = config_path(env) else {
        return Err(Error::invalid(format!(
            "no profile {name:?}: no profile file (set LABELPORT_CONFIG, XDG_CONFIG_HOME or HOME)"
        ))
        .field("profile"));
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::invalid(format!(
                "no profile {name:?}: the profile file {} does not exist",
                file.display()
            ))
            .field("profile"))
        }
        Err(e) => {
            return Err(Error::invalid(format!(
                "cannot read the profile file {}: {e}",
                file.display()
            ))
            .field("profile"))
        }
    };
    let profiles = parse(&text, &file)?;
    let mut warnings = Vec::new();
    if profiles.values().any(holds_secret) {
        if let Some(w) = readable_by_others(&file) {
            warnings.push(w);
        }
    }
    let found = profiles.get(name).cloned();
    match found {
        Some(p) => Ok((p, warnings)),
        None => {
            let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
            Err(Error::invalid(format!(
                "no profile {name:?} in {}; it has {}",
                file.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
            .field("profile"))
        }
    }
}

/// Parses a profile file's text: every `[profiles.NAME]` table.
pub fn parse(text: &str, file: &Path) -> Result<BTreeMap<String, Profile>> {
    let shown = file.display();
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let at = match e.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!(" at line {line}, column {column}")
            }
            None => String::new(),
        };
        Error::invalid(format!(
            "the profile file {shown} is not valid TOML{at}: {}",
            e.message()
        ))
        .field("profile")
    })?;
    let mut out = BTreeMap::new();
    let Some(profiles) = table.get("profiles") else {
        return Ok(out);
    };
    let Some(profiles) = profiles.as_table() else {
        return Err(
            Error::invalid(format!("in {shown}: `profiles` must be a table")).field("profile"),
        );
    };
    for (name, body) in profiles {
        let here = format!("profile {name:?} in {shown}");
        let Some(body) = body.as_table() else {
            return Err(
                Error::invalid(format!("{here} must be a table ([profiles.{name}])"))
                    .field("profile"),
            );
        };
        let mut vendor = None;
        let mut values = BTreeMap::new();
        for (key, value) in body {
            if key == "vendor" {
                match value.as_str() {
                    Some(v) => vendor = Some(v.to_string()),
                    None => {
                        return Err(Error::invalid(format!("{here}: vendor must be a string"))
                            .field("vendor"))
                    }
                }
                continue;
            }
            let (target, v) = match key.strip_suffix("_env") {
                Some(base) if !base.is_empty() => match value.as_str() {
                    Some(var) if !var.is_empty() => {
                        (base.to_string(), ProfileValue::FromEnv(var.to_string()))
                    }
                    _ => {
                        return Err(Error::invalid(format!(
                            "{here}: {key} must name an environment variable (a string)"
                        ))
                        .field(key.clone()))
                    }
                },
                _ => (
                    key.clone(),
                    ProfileValue::Literal(to_json(value, &here, key)?),
                ),
            };
            if values.insert(target.clone(), v).is_some() {
                return Err(Error::invalid(format!(
                    "{here} gives {target} twice (as {target} and {target}_env): keep one"
                ))
                .field(target));
            }
        }
        out.insert(
            name.clone(),
            Profile {
                name: name.clone(),
                file: file.to_path_buf(),
                vendor,
                values,
            },
        );
    }
    Ok(out)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn to_json(value: &toml::Value, here: &str, key: &str) -> Result<serde_json::Value> {
    Ok(match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| {
                Error::invalid(format!("{here}: {key} must be a finite number")).field(key)
            })?,
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(
            a.iter()
                .map(|v| to_json(v, here, key))
                .collect::<Result<_>>()?,
        ),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v, here, key)?)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// Whether the profile writes a credential's value in the file (rather than naming a variable).
fn holds_secret(p: &Profile) -> bool {
    let vendor = p.vendor.as_deref().map(str::to_ascii_lowercase);
    let credential = |name: &str| {
        SPECS
            .iter()
            .filter(|s| vendor.as_deref().is_none_or(|v| v == s.name))
            .any(|s| s.credentials.contains(&name))
    };
    p.values
        .iter()
        .any(|(k, v)| matches!(v, ProfileValue::Literal(_)) && credential(k))
}

#[cfg(unix)]
fn readable_by_others(file: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "the profile file {} holds credentials and other users can read it (mode {:o}): run chmod 600 {}",
            file.display(),
            mode & 0o777,
            file.display()
        )
    })
}

#[cfg(not(unix))]
fn readable_by_others(_file: &Path) -> Option<String> {
    None
}
