//! deckhand: a Kubernetes node in one binary. ../shared/DESIGN.md is the map;
//! modules follow its layers, top to bottom: cli -> apiserver -> controllers
//! -> node -> cri -> runtime -> sys. `x509` is a leaf any layer may use.

pub mod apiserver;
pub mod cli;
pub mod controllers;
pub mod cri;
pub mod dns;
pub mod node;
pub mod proxy;
pub mod runtime;
pub mod sys;
pub mod x509;
