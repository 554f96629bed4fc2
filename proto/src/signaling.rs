//! WebSocket signaling messages between browsers and the signaling service (`/v1/ws`).
