//! The Deployment controller: so far only its rollout arithmetic
//! (`rollout`), unit-tested; the watcher -> reflector -> reconcile loop
//! that applies it (ReplicaSets per template hash, revisions, conditions)
//! is not written yet.

pub mod rollout;
