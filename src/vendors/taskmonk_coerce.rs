//! `coerce=`: TaskMonk's output files hold every cell as text, and nothing in the file or the API says which
//! field is a number or a bool (docs/vendors/taskmonk.md, finding on value types). The client option
//! `coerce={field: "str" | "int" | "float" | "bool" | "json"}` names the fields to convert, in `input` and
//! `output` alike. A value that does not convert is `InvalidInput` naming the record's key and the field,
//! never kept silently as text; an empty cell of a non-`str` field is `null` (an unlabelled field).

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::engine::{Error, ErrorKind, Result};
use crate::vendors::model::Envelope;

const VENDOR: &str = "taskmonk";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Float,
    Bool,
    Json,
}

impl Kind {
    fn parse(word: &str) -> Option<Kind> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "str" => Kind::Str,
            "int" => Kind::Int,
            "float" => Kind::Float,
            "bool" => Kind::Bool,
            "json" => Kind::Json,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Str => "str",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Bool => "bool",
            Kind::Json => "json",
        }
    }

    /// `text` as this kind; `None` when it does not convert.
    fn convert(self, text: &str) -> Option<Value> {
        let t = text.trim();
        if self != Kind::Str && t.is_empty() {
            return Some(Value::Null);
        }
        match self {
            Kind::Str => Some(Value::String(text.to_string())),
            Kind::Int => t.parse::<i64>().ok().map(Value::from),
            Kind::Float => t
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            Kind::Bool => match t.to_ascii_lowercase().as_str() {
                "true" | "1" => Some(Value::Bool(true)),
                "false" | "0" => Some(Value::Bool(false)),
                _ => None,
            },
            Kind::Json => serde_json::from_str(t).ok(),
        }
    }
}

/// The fields `coerce=` names, with their kinds.
#[derive(Debug, Clone, Default)]
pub struct Coerce(Vec<(String, Kind)>);

impl Coerce {
    /// Reads the client option `coerce` (absent or `None`: nothing is converted).
    pub fn from_option(value: Option<&Value>) -> Result<Coerce> {
        let bad = |m: String| Error::invalid(m).vendor(VENDOR).field("coerce");
        // From the environment or a profile the option is text: a JSON object.
        let parsed = match value {
            Some(Value::String(s)) => Some(serde_json::from_str::<Value>(s).map_err(|_| {
                bad("coerce must be a JSON object of field name to type, e.g. '{\"count\": \"int\"}'".into())
            })?),
            _ => None,
        };
        let map = match parsed.as_ref().or(value) {
            None | Some(Value::Null) => return Ok(Coerce::default()),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(bad(
                    "coerce must be a dict of field name to \"str\", \"int\", \"float\", \"bool\" or \"json\""
                        .into(),
                ))
            }
        };
        let mut out = Vec::with_capacity(map.len());
        for (field, kind) in map {
            let kind = kind.as_str().and_then(Kind::parse).ok_or_else(|| {
                bad(format!(
                    "coerce[{field:?}] must be \"str\", \"int\", \"float\", \"bool\" or \"json\", not {kind}"
                ))
            })?;
            out.push((field.clone(), kind));
        }
        Ok(Coerce(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The option as given, for `capabilities`.
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(f, k)| (f.clone(), Value::from(k.name())))
                .collect(),
        )
    }

    /// Converts the named fields of the envelope's `input` and `output`.
    pub fn apply(&self, e: &mut Envelope) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        for part in [&mut e.input, &mut e.output] {
            if let Some(raw) = part.as_ref() {
                let converted = self.convert_map(raw, &e.key)?;
                *part = Some(converted);
            }
        }
        Ok(())
    }

    fn convert_map(&self, raw: &RawValue, key: &str) -> Result<Box<RawValue>> {
        let mut map: Map<String, Value> = match serde_json::from_str(raw.get()) {
            Ok(m) => m,
            Err(_) => return Ok(raw.to_owned()),
        };
        for (field, kind) in &self.0 {
            let Some(Value::String(text)) = map.get(field) else {
                continue;
            };
            let value = kind.convert(text).ok_or_else(|| {
                Error::invalid(format!(
                    "record {key:?}: the value {text:?} of field {field:?} is not a {} (coerce=)",
                    kind.name()
                ))
                .vendor(VENDOR)
                .operation("results")
                .key(key.to_string())
                .field(field.clone())
            })?;
            map.insert(field.clone(), value);
        }
        RawValue::from_string(Value::Object(map).to_string())
            .map_err(|e| Error::new(ErrorKind::Vendor, format!("coerce: {e}")).vendor(VENDOR))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(v: Value) -> Result<Coerce> {
        Coerce::from_option(Some(&v))
    }

    #[test]
    fn each_kind_converts_text() {
        assert_eq!(Kind::Int.convert(" 7 "), Some(Value::from(7)));
        assert_eq!(Kind::Int.convert("7.5"), None);
        assert_eq!(Kind::Float.convert("0.25"), Some(Value::from(0.25)));
        assert_eq!(Kind::Float.convert("nan"), None);
        assert_eq!(Kind::Bool.convert("True"), Some(Value::Bool(true)));
        assert_eq!(Kind::Bool.convert("0"), Some(Value::Bool(false)));
        assert_eq!(Kind::Bool.convert("maybe"), None);
        assert_eq!(
            Kind::Json.convert(r#"{"a": [1]}"#),
            Some(serde_json::json!({"a": [1]}))
        );
        assert_eq!(Kind::Str.convert(""), Some(Value::from("")));
        assert_eq!(Kind::Int.convert(""), Some(Value::Null));
    }

    #[test]
    fn the_option_is_checked() {
        assert!(kinds(serde_json::json!({"n": "int", "f": "FLOAT"})).is_ok());
        let e = kinds(serde_json::json!({"n": "integer"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("coerce"));
        assert!(kinds(serde_json::json!(["n"])).is_err());
        assert!(Coerce::from_option(None).unwrap().is_empty());
        // From the environment: a JSON object as text.
        let c = kinds(serde_json::json!(r#"{"n": "bool"}"#)).unwrap();
        assert_eq!(c.to_value(), serde_json::json!({"n": "bool"}));
        assert!(kinds(serde_json::json!("n=int")).is_err());
    }

    #[test]
    fn a_value_that_does_not_convert_names_key_and_field() {
        let c = kinds(serde_json::json!({"count": "int"})).unwrap();
        let mut e = Envelope {
            id: "1".into(),
            batch_id: "b".into(),
            key: "k1".into(),
            status: crate::vendors::model::Status::Completed,
            input: Some(RawValue::from_string(r#"{"count":"7","name":"x"}"#.into()).unwrap()),
            output: Some(RawValue::from_string(r#"{"count":"many"}"#.into()).unwrap()),
            created_at: None,
            completed_at: None,
            vendor: VENDOR,
            raw: None,
            completed_us: None,
        };
        let err = c.apply(&mut e).unwrap_err();
        assert_eq!(
            (err.key.as_deref(), err.field.as_deref()),
            (Some("k1"), Some("count"))
        );
        e.output = None;
        c.apply(&mut e).unwrap();
        assert_eq!(e.input.unwrap().get(), r#"{"count":7,"name":"x"}"#);
    }
}
