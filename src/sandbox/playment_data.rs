//! The job data shapes the Playment simulator takes: `image_url` (one URL or a list), `video_data.frames`
//! (each with a `frame_id` and a `src` URL) and `sensor_data` (`frames` or `sensors`), as the job pages
//! document them (docs/vendors/playment.md, `data.*` rows); anything else is refused with `FS_0003`.

use std::collections::HashSet;

use serde_json::{Map, Value};

fn is_url(s: &str) -> bool {
    ["http://", "https://", "s3://", "gs://"]
        .iter()
        .any(|p| s.starts_with(p))
        && s.split('/').filter(|p| !p.is_empty()).count() >= 3
        && !s.contains(char::is_whitespace)
}

/// Checks `data` against the documented image, video and sensor shapes; the number of frames, or
/// the FS_0003 message.
pub(super) fn frames_of(data: &Map<String, Value>) -> Result<u64, String> {
    fn unique_frames(frames: &[Value], url_field: Option<&str>) -> Result<u64, String> {
        let mut seen = HashSet::new();
        for f in frames {
            let Some(id) = f.get("frame_id").and_then(Value::as_str) else {
                return Err("invalid frame_id: every frame needs a string frame_id".into());
            };
            if !seen.insert(id) {
                return Err(format!("duplicate frame_id {id:?}"));
            }
            if let Some(field) = url_field {
                match f.get(field).and_then(Value::as_str) {
                    Some(u) if is_url(u) => {}
                    _ => return Err(format!("frame {id:?}: invalid {field}")),
                }
            }
        }
        Ok(frames.len() as u64)
    }
    if let Some(v) = data.get("image_url") {
        return match v {
            Value::String(u) if is_url(u) => Ok(1),
            Value::Array(us)
                if !us.is_empty() && us.iter().all(|u| u.as_str().is_some_and(is_url)) =>
            {
                Ok(us.len() as u64)
            }
            _ => Err("invalid image_url".into()),
        };
    }
    if let Some(v) = data.get("video_data") {
        let frames = v.get("frames").and_then(Value::as_array);
        return match frames {
            Some(fs) if !fs.is_empty() => unique_frames(fs, Some("src")),
            _ => Err("video_data.frames must be a non-empty list".into()),
        };
    }
    if let Some(v) = data.get("sensor_data") {
        if let Some(fs) = v.get("frames") {
            return match fs.as_array() {
                Some(fs) => unique_frames(fs, None),
                None => Err("sensor_data.frames must be a list".into()),
            };
        }
        if v.get("sensors").is_some_and(Value::is_array) {
            return Ok(1);
        }
        return Err("sensor_data needs frames or sensors".into());
    }
    Err("data holds none of image_url, video_data, sensor_data".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_shapes() {
        let d = |v: Value| frames_of(v.as_object().unwrap());
        assert_eq!(
            d(json!({"image_url": "https://e.com/a/b.jpg", "metadata": null})),
            Ok(1)
        );
        assert_eq!(
            d(json!({"image_url": ["https://e.com/a", "s3://b/k/x"]})),
            Ok(2)
        );
        assert!(d(json!({"image_url": "nope"})).is_err());
        assert!(d(json!({"url": "https://e.com/a/b.jpg"})).is_err());
        let frames = json!([{"frame_id": "f1", "src": "https://e.com/1.jpg"}, {"frame_id": "f2", "src": "https://e.com/2.jpg"}]);
        assert_eq!(d(json!({"video_data": {"frames": frames}})), Ok(2));
        let dup = json!([{"frame_id": "f1", "src": "https://e.com/1.jpg"}, {"frame_id": "f1", "src": "https://e.com/2.jpg"}]);
        assert!(d(json!({"video_data": {"frames": dup}}))
            .unwrap_err()
            .contains("duplicate"));
        assert_eq!(
            d(
                json!({"sensor_data": {"frames": [{"frame_id": "0", "sensors": []}], "sensor_meta": []}})
            ),
            Ok(1)
        );
        assert!(d(json!({"sensor_data": {"frames": [{"frame_id": 3}]}})).is_err());
    }
}
