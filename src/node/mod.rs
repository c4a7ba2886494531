//! `deckhand node`: the kubelet. It speaks to the runtime only through the
//! CRI traits in `crate::cri::api`.

pub mod podspec;
pub mod status;
