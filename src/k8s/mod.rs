//! Pure helpers over Kubernetes API values that several layers share (node,
//! apiserver, controllers): a leaf that imports nothing of ours.

pub mod qos;
pub mod quantity;
