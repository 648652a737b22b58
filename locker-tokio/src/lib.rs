//! The tokio adapter for locker.
