//! berth runtime
