//! The client API's errors.

use locker_core::auth::AuthError;
use locker_core::OpError;
use thiserror::Error;

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum Error {
    /// The cluster refused the operation; the [`OpError`] says why and what to do.
    #[error("refused: {0}")]
    Refused(#[from] OpError),
    /// The node did not accept our secret (or we did not accept its): check `--secret-file`.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The node could not be reached or the connection broke; retry or try another node.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The node closed the connection or stopped before answering.
    #[error("the node closed the connection before answering")]
    Closed,
    /// The node did not answer in time (its own bound plus
    /// [`REPLY_GRACE`](crate::client::REPLY_GRACE)): it may be overloaded,
    /// paused or partitioned. The operation may or may not have taken effect.
    #[error("the node did not answer in time")]
    Timeout,
    /// A lease guard's lease was lost (its deadline passed, or the key was
    /// taken away) before the holder released it, or a lock for a guard was
    /// granted too late to be valid: the holder may already have been
    /// replaced, so whatever it did after the loss was not fenced by a held
    /// lease.
    #[error("the lease was lost: its deadline passed or another holder took the key")]
    LeaseLost,
    /// The node answered with something this request cannot produce (a bug).
    #[error("unexpected answer from the node")]
    Unexpected,
}

impl Error {
    /// The refusal, if the cluster refused the operation.
    pub fn op_error(&self) -> Option<&OpError> {
        match self {
            Error::Refused(e) => Some(e),
            _ => None,
        }
    }
}
