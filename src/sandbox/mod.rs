//! Placeholder until the simulator branch lands.
