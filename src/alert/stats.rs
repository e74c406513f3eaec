//! Alert-fatigue figures from a stream of alert records (`osprey alerts stats`).
