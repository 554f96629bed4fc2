//! Control-plane REST request and response bodies (`/v1/...`).
