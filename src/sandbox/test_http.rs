//! What the simulators' socket tests share: an answer as a test reads it.

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON (`null` when it is not JSON).
    pub body: Value,
    pub text: String,
    pub bytes: Vec<u8>,
}

impl Answer {
    /// A header's value, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type")
    }

    /// `X-Total-Count`.
    pub fn total(&self) -> u64 {
        self.header("x-total-count").parse().unwrap()
    }

    /// The body, a JSON array.
    pub fn items(&self) -> &Vec<Value> {
        self.body.as_array().expect("a JSON array")
    }
}

pub async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap().to_vec();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
        bytes,
    }
}

/// Sends a request and reads its answer.
pub async fn send(req: reqwest::RequestBuilder) -> Answer {
    answer(req.send().await.unwrap()).await
}
