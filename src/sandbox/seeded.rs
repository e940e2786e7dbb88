//! Seeded draws: ids, secrets, labels and failures that are the same on every run with the same seed,
//! and differ between seeds.

use sha2::{Digest, Sha256};

/// SHA-256 of the seed followed by `parts`.
pub fn digest(seed: u64, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new().chain_update(seed.to_le_bytes());
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `digest` of `what`, a zero byte, then `data`: the separator keeps ("ab", "c") and ("a", "bc") apart.
pub fn hash(seed: u64, what: &str, data: &[u8]) -> [u8; 32] {
    digest(seed, &[what.as_bytes(), &[0], data])
}

/// A uniform draw in [0, 1) from the first 8 bytes of a hash (53 bits, an f64's precision).
pub fn unit(h: &[u8]) -> f64 {
    (u64::from_le_bytes(h[..8].try_into().unwrap()) >> 11) as f64 / (1u64 << 53) as f64
}

/// Version 4, RFC 4122 variant: seeded ids that look like the vendors' random ones.
pub fn uuid_v4(mut b: [u8; 16]) -> uuid::Uuid {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b)
}

/// A seeded version 4 id for (`what`, `data`).
pub fn uuid(seed: u64, what: &str, data: &[u8]) -> uuid::Uuid {
    uuid_v4(hash(seed, what, data)[..16].try_into().unwrap())
}
