//! The query values of a list that are not selectors: `limit` and the
//! `continue` token, parsed as kube-apiserver parses them (a bad one is a
//! 400, never a panic). Fuzzed in tests/fuzz.

use base64::Engine;
use serde_json::{Value, json};

use crate::apiserver::error::ApiError;

/// `limit`: kube takes any int64; zero or negative means no limit.
pub fn limit(param: Option<&str>) -> Result<usize, ApiError> {
    match param {
        Some(l) => Ok(l
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest(format!("invalid limit: {l}")))?
            .try_into()
            .unwrap_or(0)),
        None => Ok(0),
    }
}

/// The token of the page after `key`, read at `rev`.
pub fn encode_continue(rev: u64, key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rev, "start": key}).to_string())
}

/// The key a token continues from; it must lie under `prefix`.
pub fn decode_continue(token: &str, prefix: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest("invalid continue token".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let start = v["start"].as_str().ok_or_else(bad)?;
    // A token is only good for the collection it came from.
    if !start.starts_with(prefix) {
        return Err(bad());
    }
    Ok(start.to_string())
}
