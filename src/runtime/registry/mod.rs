//! Talking to image registries: host configuration (containerd's hosts.toml),
//! authentication, and the OCI distribution protocol.

pub mod auth;
pub mod client;
pub mod hosts;

pub use auth::Credentials;
pub use client::{RegistryClient, RegistryError, RepositorySession};
pub use hosts::{HostsConfig, RegistryHost};
