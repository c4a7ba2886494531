//! deckhand: a Kubernetes node in one binary. ../shared/DESIGN.md is the map;
//! modules follow its layers, top to bottom: cli -> apiserver -> controllers
//! -> node -> cri -> runtime -> sys.

pub mod apiserver;
pub mod cli;
pub mod controllers;
pub mod cri;
pub mod node;
pub mod runtime;
pub mod sys;
