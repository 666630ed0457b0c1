//! Tests of the sans-IO core with a fake clock.
