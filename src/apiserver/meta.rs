//! Small helpers about object metadata every layer uses: the clock in
//! kube's timestamp format, metadata fields, generated names, and marking an
//! object for deletion.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::apiserver::error::ApiError;
use crate::apiserver::store::Txn;

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

pub fn meta_str<'a>(o: &'a Value, field: &str) -> &'a str {
    o["metadata"][field].as_str().unwrap_or("")
}

pub fn generate_name(prefix: &str) -> String {
    // apimachinery's alphabet: no vowels (no words), no confusable digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Set deletionTimestamp (now + grace) on an object: what a delete does to
/// an object with finalizers or a pod with a grace period. A pending
/// deletion only ever gets shorter.
pub fn mark_deleting(
    txn: &mut Txn<'_>,
    key: &str,
    mut old: Value,
    grace: i64,
) -> Result<Value, ApiError> {
    let current = old["metadata"]["deletionGracePeriodSeconds"].as_i64();
    if old["metadata"]["deletionTimestamp"].is_string() && current.is_none_or(|c| c <= grace) {
        return Ok(old);
    }
    let at = SystemTime::now() + Duration::from_secs(grace.max(0) as u64);
    old["metadata"]["deletionTimestamp"] = json!(humantime::format_rfc3339_seconds(at).to_string());
    old["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    Ok(txn.put(key, old)?)
}
