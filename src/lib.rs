pub mod engine;
pub mod sandbox;
