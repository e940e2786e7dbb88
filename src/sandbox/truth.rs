//! Labels of known quality: with `accuracy` set (`POST /_sim/quality`, `lp.sandbox.start(accuracy=...)`),
//! every simulator draws a record's labels from a truth that is the same in every sandbox, whatever its
//! vendor or seed, so a bake-off of sandboxes recovers agreement and consensus values the settings imply.
//!
//! - A record's **identity** is its `image_id` (or `name`) value as text, else its data's JSON text; the
//!   same record sent to two vendors has the same identity.
//! - Its **true class** is one of [`CLASSES`], drawn from a hash of the identity alone (no seed).
//! - A labeller gives the true class with probability `accuracy`, else one of the other three, each
//!   equally likely: the draws hash the sandbox's seed, its vendor and the identity, so two sandboxes err
//!   independently unless they share both vendor and seed.
//! - Its **true box** is drawn from the identity too (corners in [0, 1], sides 0.2 to 0.5), and each
//!   labelled box moves each corner by a uniform draw in `[-box_jitter, +box_jitter]`.
//!
//! Without `accuracy` every simulator labels as it always has.

use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{json, Map, Value};

use super::seeded::{hash, unit};

/// The classes labels are drawn from when `accuracy` is set, in every simulator.
pub const CLASSES: [&str; 4] = ["car", "truck", "bus", "bicycle"];

/// The fixed seed of the truth: not the sandbox's, so sandboxes of any seed share it.
const TRUTH_SEED: u64 = 0x0074_7275_7468;

/// How good the simulated labellers are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quality {
    /// The share of labels equal to the truth, 0.0 to 1.0.
    pub accuracy: f64,
    /// How far each corner of a labelled box may move from the true one (same units as the box: 0 to 1).
    pub box_jitter: f64,
}

impl Quality {
    /// From `{"accuracy": a, "box_jitter": j}` (`box_jitter` defaults to 0.0), both in [0, 1].
    pub fn from_json(v: &Value) -> Result<Quality, String> {
        let num = |name: &str, default: Option<f64>| -> Result<f64, String> {
            match v.get(name) {
                None | Some(Value::Null) => {
                    default.ok_or_else(|| format!("expected {{\"{name}\": <number from 0 to 1>}}"))
                }
                Some(x) => match x.as_f64() {
                    Some(f) if (0.0..=1.0).contains(&f) => Ok(f),
                    _ => Err(format!("{name} must be a number from 0 to 1, not {x}")),
                },
            }
        };
        Ok(Quality {
            accuracy: num("accuracy", None)?,
            box_jitter: num("box_jitter", Some(0.0))?,
        })
    }

    pub fn to_json(self) -> Value {
        json!({"accuracy": self.accuracy, "box_jitter": self.box_jitter})
    }
}

/// The sandbox's quality setting, shared by its simulator's parts (`None`: the seeded labels).
#[derive(Clone, Debug, Default)]
pub struct Setting(Arc<RwLock<Option<Quality>>>);

impl Setting {
    pub fn get(&self) -> Option<Quality> {
        *self.0.read()
    }

    pub fn set(&self, q: Quality) {
        *self.0.write() = Some(q);
    }
}

/// The identity a record's truth is drawn from: its `image_id` or `name`, else its JSON text.
pub fn identity(data: &Map<String, Value>) -> String {
    for field in ["image_id", "name"] {
        match data.get(field) {
            Some(Value::String(s)) => return s.clone(),
            Some(v @ Value::Number(_)) => return v.to_string(),
            _ => {}
        }
    }
    Value::Object(data.clone()).to_string()
}

/// The index of the record's true class in [`CLASSES`].
pub fn true_class(identity: &str) -> usize {
    hash(TRUTH_SEED, "class", identity.as_bytes())[0] as usize % CLASSES.len()
}

/// The class a labeller of this sandbox gives the record (`what` tells apart several labels of one record).
pub fn labelled_class(
    q: Quality,
    seed: u64,
    vendor: &str,
    identity: &str,
    what: &str,
) -> &'static str {
    let truth = true_class(identity);
    let h = hash(
        seed,
        &format!("accuracy:{vendor}:{what}"),
        identity.as_bytes(),
    );
    if unit(&h) < q.accuracy {
        return CLASSES[truth];
    }
    // One of the other classes, each equally likely.
    let other = 1 + h[8] as usize % (CLASSES.len() - 1);
    CLASSES[(truth + other) % CLASSES.len()]
}

/// The record's true box `(x1, y1, x2, y2)`, inside [0, 1].
pub fn true_box(identity: &str) -> [f64; 4] {
    let h = hash(TRUTH_SEED, "box", identity.as_bytes());
    let w = 0.2 + 0.3 * unit(&h[0..8]);
    let ht = 0.2 + 0.3 * unit(&h[8..16]);
    let x = (1.0 - w) * unit(&h[16..24]);
    let y = (1.0 - ht) * unit(&h[24..32]);
    [x, y, x + w, y + ht]
}

/// The box a labeller of this sandbox draws: each corner of the true box moved by up to `box_jitter`.
pub fn labelled_box(q: Quality, seed: u64, vendor: &str, identity: &str) -> [f64; 4] {
    let t = true_box(identity);
    let h = hash(seed, &format!("jitter:{vendor}"), identity.as_bytes());
    let mut b = [0.0; 4];
    for i in 0..4 {
        let d = (2.0 * unit(&h[i * 8..i * 8 + 8]) - 1.0) * q.box_jitter;
        b[i] = ((t[i] + d) * 10_000.0).round() / 10_000.0;
    }
    // Keep a box a box: corners in order.
    [
        b[0].min(b[2]),
        b[1].min(b[3]),
        b[0].max(b[2]),
        b[1].max(b[3]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_truth_depends_on_the_identity_only() {
        let obj = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            identity(&obj(json!({"image_id": "a.jpg", "caption": "x"}))),
            "a.jpg"
        );
        assert_eq!(identity(&obj(json!({"name": 7}))), "7");
        assert_eq!(identity(&obj(json!({"k": 1}))), "{\"k\":1}");
        let perfect = Quality {
            accuracy: 1.0,
            box_jitter: 0.0,
        };
        for id in ["a", "b", "c", "d"] {
            let t = CLASSES[true_class(id)];
            assert_eq!(labelled_class(perfect, 1, "sama", id, "label"), t);
            assert_eq!(labelled_class(perfect, 2, "alegion", id, "label"), t);
            assert_eq!(
                labelled_box(perfect, 3, "playment", id),
                true_box(id).map(|v| (v * 1e4).round() / 1e4)
            );
        }
    }

    #[test]
    fn accuracy_is_the_share_of_true_labels_and_errors_are_never_the_truth() {
        let q = Quality {
            accuracy: 0.8,
            box_jitter: 0.0,
        };
        let n = 20_000;
        let right = (0..n)
            .filter(|i| {
                let id = format!("rec-{i}");
                labelled_class(q, 5, "alegion", &id, "label") == CLASSES[true_class(&id)]
            })
            .count();
        let share = right as f64 / n as f64;
        // Binomial standard error at n = 20,000: 0.0028; four of them.
        assert!((share - 0.8).abs() < 0.012, "{share}");
        let never = Quality {
            accuracy: 0.0,
            box_jitter: 0.0,
        };
        assert!((0..500).all(|i| {
            let id = format!("r{i}");
            labelled_class(never, 0, "sama", &id, "label") != CLASSES[true_class(&id)]
        }));
    }

    #[test]
    fn jittered_boxes_stay_within_the_jitter() {
        let q = Quality {
            accuracy: 1.0,
            box_jitter: 0.02,
        };
        for i in 0..200 {
            let id = format!("r{i}");
            let (t, b) = (true_box(&id), labelled_box(q, 9, "deepen", &id));
            assert!(
                t.iter().zip(b).all(|(x, y)| (x - y).abs() <= 0.02 + 1e-4),
                "{t:?} {b:?}"
            );
            assert!(t[2] - t[0] >= 0.2 && t[3] - t[1] >= 0.2 && t[2] <= 1.0 && t[3] <= 1.0);
        }
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(Quality::from_json(&json!({"accuracy": 1.5})).is_err());
        assert!(Quality::from_json(&json!({})).is_err());
        assert!(Quality::from_json(&json!({"accuracy": 0.5, "box_jitter": -1})).is_err());
        let q = Quality::from_json(&json!({"accuracy": 0.5})).unwrap();
        assert_eq!(
            q,
            Quality {
                accuracy: 0.5,
                box_jitter: 0.0
            }
        );
    }
}
