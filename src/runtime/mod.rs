//! The container runtime: images, sandboxes, containers; backends containerd | runc.

pub mod containerd;
pub mod image;
pub mod registry;
pub mod sandbox;
