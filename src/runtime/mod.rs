//! The container runtime: images, sandboxes, containers; backends containerd | runc.

pub mod clock;
pub mod container;
pub mod containerd;
pub mod image;
pub mod image_service;
pub mod log;
pub mod registry;
pub mod sandbox;
pub mod service;
pub mod streaming;
pub mod validate;
