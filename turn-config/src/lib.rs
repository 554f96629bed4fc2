//! TURN credentials.
