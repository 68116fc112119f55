//! koko's integration tests: one test binary, one module per area, and one
//! shared harness (`support`), in the style of ripgrep's tests/.
//!
//! Every test that touches the kernel builds a [`support::Sandbox`] (a
//! private network and mount namespace), acts through the koko binary or
//! library, and checks the result through the kernel (`ip -j`, `tc -j`)
//! with the place-agnostic queries of `support` — a named netns, a pid's
//! namespace or a container are all a [`support::Place`]. Tests that need
//! something this machine may lack (a container engine, a pseudo-terminal)
//! call `support::skip`, which prints a `SKIP:` line and fails under
//! `CI=true`. Nothing waits by a fixed sleep: `support::wait_until` polls an
//! observable condition and names it when it times out.
//!
//! To add a test: put it in the module of its area (or a new `mod` here),
//! `use crate::support::...`, and name it after the behaviour it proves;
//! other work selects tests by name patterns such as `test(/mirror/)`.

mod support;

mod bad_inputs;
mod capture;
mod cli_errors;
mod cli_veth;
mod cni;
mod completions;
mod cri;
mod docker;
mod failover;
mod graph;
mod impair;
mod kernel_features;
mod koko_test;
mod koro;
mod monitor_flood;
mod polish;
mod races;
mod recovery;
mod repl;
mod rewire;
mod scale;
mod script;
mod script_options;
mod scripts_examples;
mod service_chain;
mod signals;
mod truth;
mod tunnels;
