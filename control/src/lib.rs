//! convene's control plane: users, teams, conferences and the waiting hall
//! behind a REST API.
#![forbid(unsafe_code)]
