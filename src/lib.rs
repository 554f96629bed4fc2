//! The `convene` command's library half: what joins the services together
//! when they run in one process ([`inprocess`]) and the embedded browser
//! client ([`web`]). The services themselves live in the workspace crates
//! (`convene-control`, `convene-sfu`, `convene-signaling`); this crate may
//! depend on all of them, and nothing depends on it.
#![forbid(unsafe_code)]

pub mod inprocess;
pub mod web;
