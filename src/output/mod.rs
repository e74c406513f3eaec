//! How result rows look outside the engine: JSON (the documented result format) and tables.

pub mod json;
pub mod table;
