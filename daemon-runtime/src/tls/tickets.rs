//! Session tickets every worker can read: a client that resumes its session on another worker
//! (the kernel picks the worker) is still resumed. A per-process ticket key (rustls's own
//! ticketer) would be made in each worker, or made once and rotated apart in each; here the
//! keys are derived from a secret the manager makes before it forks, and from the hour, so every
//! worker of a generation has the same key at the same time without talking to the others.
//!
//! A ticket is `epoch (8 bytes) | nonce (12) | ChaCha20-Poly1305(state)`, its epoch the hour it
//! was sealed in, also its additional data. Tickets of this hour and the last one open; so a key
//! lives two hours at most, and is never stored: it is derived again (HKDF-SHA256 of the secret,
//! for the epoch) when used. A reload makes a new secret and keeps the last one for opening, so
//! the new workers still resume the old workers' clients.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};

/// How long a ticket key seals new tickets.
const EPOCH_SECS: u64 = 3600;
const EPOCH_LEN: usize = 8;

/// A secret the manager made; the newest first, then the one before the last reload.
pub(super) type Secret = [u8; 32];

pub(super) fn new_secret() -> Result<Secret, String> {
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret).map_err(|_| "the system's random source failed".to_string())?;
    Ok(secret)
}

#[derive(Debug)]
pub(super) struct Tickets {
    /// The secret tickets are sealed with, then the ones still opened.
    secrets: Vec<Secret>,
    rng: SystemRandom,
}

impl Tickets {
    pub(super) fn new(secrets: Vec<Secret>) -> Tickets {
        Tickets { secrets, rng: SystemRandom::new() }
    }

    fn epoch_now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) / EPOCH_SECS
    }

    fn key(secret: &Secret, epoch: u64) -> Option<LessSafeKey> {
        let prk = Salt::new(HKDF_SHA256, secret).extract(b"daemon session tickets");
        let info = epoch.to_be_bytes();
        let info: [&[u8]; 1] = [&info];
        let okm = prk.expand(&info, &CHACHA20_POLY1305).ok()?;
        let mut bytes = [0u8; 32];
        okm.fill(&mut bytes).ok()?;
        Some(LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &bytes).ok()?))
    }

    fn seal(&self, epoch: u64, plain: &[u8]) -> Option<Vec<u8>> {
        let key = Self::key(self.secrets.first()?, epoch)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(EPOCH_LEN + NONCE_LEN + plain.len() + CHACHA20_POLY1305.tag_len());
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(epoch.to_be_bytes()), &mut sealed).ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn open(&self, now: u64, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < EPOCH_LEN + NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let (epoch, rest) = ticket.split_at(EPOCH_LEN);
        let epoch = u64::from_be_bytes(epoch.try_into().ok()?);
        if epoch != now && epoch.checked_add(1) != Some(now) {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        for secret in &self.secrets {
            let key = Self::key(secret, epoch)?;
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut buf = sealed.to_vec();
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(epoch.to_be_bytes()), &mut buf) {
                return Some(plain.to_vec());
            }
        }
        None
    }
}

impl rustls::server::ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        EPOCH_SECS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(Self::epoch_now(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(Self::epoch_now(), cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_opens_with_the_same_secret_this_hour_and_the_next_only() {
        let secret = new_secret().expect("a secret");
        let (a, b) = (Tickets::new(vec![secret]), Tickets::new(vec![secret]));
        let ticket = a.seal(100, b"session state").expect("sealed");
        assert_eq!(b.open(100, &ticket).as_deref(), Some(&b"session state"[..]), "another worker opens it");
        assert_eq!(b.open(101, &ticket).as_deref(), Some(&b"session state"[..]), "and the next hour");
        assert_eq!(b.open(102, &ticket), None, "not after");
        assert_eq!(b.open(99, &ticket), None, "nor from the future");
        let other = Tickets::new(vec![new_secret().expect("a secret")]);
        assert_eq!(other.open(100, &ticket), None, "another secret does not open it");
        // After a reload: the new secret seals, the last one still opens.
        let reloaded = Tickets::new(vec![new_secret().expect("a secret"), secret]);
        assert_eq!(reloaded.open(100, &ticket).as_deref(), Some(&b"session state"[..]));
        let mut tampered = ticket.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(b.open(100, &tampered), None);
        assert_eq!(b.open(100, &ticket[..10]), None);
        assert_eq!(b.open(100, &[]), None);
    }
}
