//! deckhand's fuzz targets: property tests over every parser that takes
//! untrusted input (apiserver bodies, patches, selectors, query values; CRI
//! request fields; kubelet API query and configuration; quantities).
//!
//! The property is the same for all: the parser returns Ok or a clean error,
//! never panics and never takes long (each case runs on a thread with a
//! deadline); where a round trip means something (protobuf, continue tokens,
//! merge patches, selectors built from valid parts) it holds.
//!
//! They run in `cargo test` with a few cases each (`DECKHAND_FUZZ_CASES`,
//! default 32), and long under `hack/fuzz [target] [--cases N|--time S]`.
//! There is no nightly toolchain for cargo-fuzz here, so proptest drives
//! them: random inputs from structured generators plus byte mutations of
//! valid seeds, shrunk to a small input on failure. A finding becomes a
//! named regression test next to its target (`regression_*`).

mod apiserver;
mod cri;
mod node;

use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config;

/// The cases each target runs: `DECKHAND_FUZZ_CASES`, else 32.
pub fn config() -> Config {
    let cases = std::env::var("DECKHAND_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    Config {
        cases,
        // Findings are kept as named regression tests, not in files.
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

/// How long one case may take: a parser that needs more is a hang.
const CASE_DEADLINE: Duration = Duration::from_secs(10);

/// Runs `f` on a thread and fails the case if it panics or outlives the
/// deadline (the stuck thread is left behind: the test fails anyway).
pub fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("fuzz {what}"))
        .stack_size(8 << 20)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a fuzz case");
    match rx.recv_timeout(CASE_DEADLINE) {
        Ok(value) => {
            let _ = handle.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("{what}: the case ended without an answer"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer within {CASE_DEADLINE:?} (a hang)")
        }
    }
}

/// Byte edits applied to a valid seed: flip, insert, delete, truncate,
/// duplicate a span. Positions are taken modulo the length.
#[derive(Debug, Clone)]
pub enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Insert(p, b)),
        (any::<usize>(), 1usize..16).prop_map(|(p, n)| Edit::Delete(p, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Edit::Duplicate(p, n)),
    ];
    prop::collection::vec(edit, 0..6)
}

pub fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        let at = |p: usize| if len == 0 { 0 } else { p % len };
        match *edit {
            Edit::Flip(p, b) if len > 0 => bytes[at(p)] ^= b | 1,
            Edit::Insert(p, b) => bytes.insert(if len == 0 { 0 } else { p % (len + 1) }, b),
            Edit::Delete(p, n) if len > 0 => {
                let start = at(p);
                let end = (start + n).min(len);
                bytes.drain(start..end);
            }
            Edit::Truncate(p) => bytes.truncate(if len == 0 { 0 } else { p % (len + 1) }),
            Edit::Duplicate(p, n) if len > 0 => {
                let start = at(p);
                let end = (start + n).min(len);
                let span = bytes[start..end].to_vec();
                bytes.splice(start..start, span);
            }
            _ => {}
        }
    }
    bytes
}

/// Text that parsers of Kubernetes strings meet: their own punctuation,
/// digits, units, whitespace and control characters, some Unicode.
pub fn tricky_text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9]{1,8}",
        3 => prop::sample::select(vec![
            "=", "==", "!=", "!", ",", "(", ")", " in ", " notin ", "in", "notin", "/", ".",
            "-", "_", " ", "\t", "\n", "\0", "\r", "#", ";", ":", "..", "../", "/..", "e",
            "E", "Ki", "Mi", "m", "k", "G", "Ei", "+", "e99999", "1e308", "-0", "0x",
            "9223372036854775807", "18446744073709551616", "-9223372036854775808", "é",
            "\u{202e}", "\u{ffff}", "%", "%00", "\\", "\"", "'", "{", "}", "[", "]",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|pieces| pieces.concat())
}

/// Arbitrary JSON, bounded in depth and size.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        tricky_text(6).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object key: mostly the field names Kubernetes objects carry.
pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "metadata", "name", "namespace", "labels", "annotations", "spec", "status",
            "data", "containers", "image", "env", "value", "ports", "containerPort",
            "volumes", "items", "kind", "apiVersion", "$patch", "$retainKeys",
            "$setElementOrder/containers", "$deleteFromPrimitiveList/finalizers",
            "finalizers", "resourceVersion", "uid", "generateName", "key", "type",
        ])
        .prop_map(str::to_string),
        1 => "[a-zA-Z$/._-]{0,10}",
    ]
}
