//! Containers: how a CRI container config becomes an OCI runtime spec
//! (spec.rs) and which identity its process runs as (user.rs).

pub mod spec;
pub mod user;
