//! The verbs: get, list, create, update, patch, delete, deletecollection and
//! pods/binding (watch is in `watch`). One generic path for every kind;
//! kind-specific behaviour comes from `kinds` (defaults, validation and the
//! rules kube-apiserver has: graceful pod deletion, namespace side effects
//! and termination, service IPs, pod spec immutability).
//!
//! Every mutation is a single store transaction: read, check preconditions,
//! write. So optimistic concurrency is exact (no window between the
//! resourceVersion check and the write) and a rejected request writes nothing.

pub mod bind;
pub mod common;
pub mod create;
pub mod decode;
pub mod delete;
pub mod eviction;
pub mod patch;
pub mod read;
pub mod scale;
pub mod update;

#[cfg(test)]
mod tests;
