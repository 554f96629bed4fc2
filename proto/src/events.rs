//! Events the control plane publishes for the signaling service (in-process bus or Redis channel `convene:conference:{id}`).
