//! Keeping replicas in sync: per-bucket digests ([`merkle`]), and the Sync actor that moves
//! buckets when ownership changes and runs anti-entropy between replicas.

pub mod merkle;
