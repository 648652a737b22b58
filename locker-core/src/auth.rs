//! The connection handshake: both ends prove they know the cluster secret
//! with HMAC-SHA256 over nonces from both sides. The secret never travels.
//!
//! Sans-IO: the caller supplies the nonces (from its own random source) and
//! moves the [`Envelope`]s.
//!
//! 1. connector → `Hello { who, nonce: c }`
//! 2. acceptor → `Challenge { nonce: s, proof: HMAC(secret, "acceptor" | c | s) }`
//! 3. connector checks the proof, → `Proof { proof: HMAC(secret, "connector" | s | c | who) }`
//! 4. acceptor checks it and answers `Welcome` (or `AuthFailed`, then closes).
//!
//! ```
//! use locker_core::auth::{Acceptor, Connector};
//! use locker_core::envelope::Who;
//! let secret = b"cluster secret";
//! let mut c = Connector::new(secret, [1; 32], Who::Client);
//! let a = Acceptor::new(secret, [2; 32]);
//! let hello = c.hello();
//! let (a, challenge) = a.on_hello(&hello).unwrap();
//! let proof = c.on_challenge(&challenge).unwrap();
//! assert_eq!(a.on_proof(&proof).unwrap(), Who::Client);
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::envelope::{Envelope, Who};

/// A nonce: 32 random bytes chosen by one side.
pub type Nonce = [u8; 32];
/// An HMAC-SHA256 tag.
pub type Tag = [u8; 32];

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The other side does not know the same secret (or none where one is set).
    #[error("authentication failed: the other side does not know the cluster secret")]
    BadProof,
    /// The other side sent something else than the next handshake step.
    #[error("unexpected frame during the handshake")]
    Unexpected,
    /// The acceptor refused our proof.
    #[error("authentication failed: the node refused our secret")]
    Refused,
}

fn tag(secret: &[u8], label: &[u8], a: &Nonce, b: &Nonce, who: Option<&Who>) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, the empty one included.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(label);
    mac.update(a);
    mac.update(b);
    if let Some(who) = who {
        match who {
            Who::Client => mac.update(&[0]),
            Who::Peer(id) => {
                mac.update(&[1]);
                mac.update(&id.0.to_le_bytes());
            }
        }
    }
    mac
}

/// The side that opened the connection.
pub struct Connector {
    secret: Vec<u8>,
    nonce: Nonce,
    who: Who,
}

impl Connector {
    /// Starts a handshake as `who`, with a fresh random `nonce`.
    pub fn new(secret: &[u8], nonce: Nonce, who: Who) -> Connector {
        Connector {
            secret: secret.to_vec(),
            nonce,
            who,
        }
    }

    /// The first frame to send.
    pub fn hello(&self) -> Envelope {
        Envelope::Hello {
            who: self.who,
            nonce: self.nonce,
        }
    }

    /// Checks the acceptor's proof and returns our own proof to send.
    pub fn on_challenge(&mut self, frame: &Envelope) -> Result<Envelope, AuthError> {
        let Envelope::Challenge { nonce, proof } = frame else {
            return Err(if matches!(frame, Envelope::AuthFailed) {
                AuthError::Refused
            } else {
                AuthError::Unexpected
            });
        };
        tag(&self.secret, b"locker acceptor", &self.nonce, nonce, None)
            .verify_slice(proof)
            .map_err(|_| AuthError::BadProof)?;
        let mine = tag(
            &self.secret,
            b"locker connector",
            nonce,
            &self.nonce,
            Some(&self.who),
        );
        Ok(Envelope::Proof {
            proof: mine.finalize().into_bytes().into(),
        })
    }

    /// Reads the acceptor's verdict.
    pub fn on_verdict(frame: &Envelope) -> Result<(), AuthError> {
        match frame {
            Envelope::Welcome => Ok(()),
            Envelope::AuthFailed => Err(AuthError::Refused),
            _ => Err(AuthError::Unexpected),
        }
    }
}

/// The side that accepted the connection.
pub struct Acceptor {
    secret: Vec<u8>,
    nonce: Nonce,
}

/// An acceptor that has answered the hello and waits for the proof.
pub struct Challenged {
    secret: Vec<u8>,
    nonce: Nonce,
    peer_nonce: Nonce,
    who: Who,
}

impl Acceptor {
    /// Waits for a hello, with a fresh random `nonce`.
    pub fn new(secret: &[u8], nonce: Nonce) -> Acceptor {
        Acceptor {
            secret: secret.to_vec(),
            nonce,
        }
    }

    /// Answers the hello with a challenge that also proves our knowledge.
    pub fn on_hello(self, frame: &Envelope) -> Result<(Challenged, Envelope), AuthError> {
        let Envelope::Hello { who, nonce } = frame else {
            return Err(AuthError::Unexpected);
        };
        let proof = tag(&self.secret, b"locker acceptor", nonce, &self.nonce, None);
        let challenge = Envelope::Challenge {
            nonce: self.nonce,
            proof: proof.finalize().into_bytes().into(),
        };
        Ok((
            Challenged {
                secret: self.secret,
                nonce: self.nonce,
                peer_nonce: *nonce,
                who: *who,
            },
            challenge,
        ))
    }
}

impl Challenged {
    /// Who the other side claims to be (not yet proven).
    pub fn claimed(&self) -> Who {
        self.who
    }

    /// Checks the connector's proof; on success the connection is `who`.
    pub fn on_proof(self, frame: &Envelope) -> Result<Who, AuthError> {
        let Envelope::Proof { proof } = frame else {
            return Err(AuthError::Unexpected);
        };
        tag(
            &self.secret,
            b"locker connector",
            &self.nonce,
            &self.peer_nonce,
            Some(&self.who),
        )
        .verify_slice(proof)
        .map_err(|_| AuthError::BadProof)?;
        Ok(self.who)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeId;

    #[test]
    fn wrong_secret_is_caught_by_both_sides() {
        let mut c = Connector::new(b"right", [1; 32], Who::Peer(NodeId(3)));
        let (_, challenge) = Acceptor::new(b"wrong", [2; 32])
            .on_hello(&c.hello())
            .unwrap();
        assert_eq!(c.on_challenge(&challenge), Err(AuthError::BadProof));

        // A connector that skips checking still cannot forge the proof.
        let liar = Connector::new(b"wrong", [1; 32], Who::Peer(NodeId(3)));
        let (a, _) = Acceptor::new(b"right", [2; 32])
            .on_hello(&liar.hello())
            .unwrap();
        let forged = Envelope::Proof { proof: [0; 32] };
        assert_eq!(a.on_proof(&forged), Err(AuthError::BadProof));
        let _ = liar.hello();
    }

    #[test]
    fn a_proof_is_bound_to_the_claimed_identity() {
        let mut c = Connector::new(b"s", [1; 32], Who::Peer(NodeId(1)));
        let (_, ch) = Acceptor::new(b"s", [2; 32]).on_hello(&c.hello()).unwrap();
        let proof = c.on_challenge(&ch).unwrap();
        let other = Envelope::Hello {
            who: Who::Peer(NodeId(2)),
            nonce: [1; 32],
        };
        let (a, _) = Acceptor::new(b"s", [2; 32]).on_hello(&other).unwrap();
        assert_eq!(a.on_proof(&proof), Err(AuthError::BadProof));
    }
}
