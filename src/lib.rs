//! deckhand: a Kubernetes node in one binary. ../shared/DESIGN.md is the map;
//! modules follow its layers, top to bottom: cli -> apiserver -> controllers
//! -> node -> cri -> runtime -> sys. `x509`, `k8s` (API value helpers) and `task` are leaves
//! any layer may use.

pub mod apiserver;
pub mod cli;
pub mod controllers;
pub mod cri;
pub mod dns;
pub mod k8s;
pub mod node;
pub mod proxy;
pub mod runtime;
pub mod sys;
pub mod task;
pub mod x509;
