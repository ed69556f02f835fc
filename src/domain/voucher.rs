//! Voucher codes: short, human-typeable, unguessable and self-verifying.
//!
//! A code is 16 Crockford base32 symbols shown as `XXXX-XXXX-XXXX-XXXX`
//! (80 bits). It carries its own claims and a MAC:
//!
//! ```text
//! nonce (20 bits) | amount in whole EUR (8) | expiry hour since 2024-01-01 UTC (18) | MAC (34)
//! MAC = HMAC-SHA256(secret, "nudge-voucher-v1" | claims | session_id), first 34 bits
//! ```
//!
//! - Self-verifying: a forged or mistyped code is rejected from the code
//!   alone, before any storage is touched; a guess has a 1 in 2^34
//!   (about 1.7e10) chance per session.
//! - Bound to the session (the session id is inside the MAC but not in the
//!   code: another session's code does not verify), to the tier (amount) and
//!   to the expiry (rounded up to the hour in the code; the ledger keeps the
//!   exact time).
//! - Typeable: Crockford's alphabet has no I, L, O, U; on input `O` reads as
//!   0, `I`/`L` as 1, case, spaces and dashes are ignored.
//!
//! The secret comes from config or the environment (injected by the binary)
//! or is generated once and kept in the data directory; it is never logged.

use hmac::{Hmac, Mac};
use sha2::Sha256;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const SYMBOLS: usize = 16;
const NONCE_BITS: u32 = 20;
const AMOUNT_BITS: u32 = 8;
const EXPIRY_BITS: u32 = 18;
const MAC_BITS: u32 = 34;
const CLAIM_BITS: u32 = NONCE_BITS + AMOUNT_BITS + EXPIRY_BITS;
/// 2024-01-01T00:00:00Z, the origin of the expiry hour.
const EPOCH_MS: i64 = 1_704_067_200_000;
const MS_PER_HOUR: i64 = 3_600_000;
const DOMAIN: &[u8] = b"nudge-voucher-v1";

/// Largest face value a code can carry, cents (255 EUR).
pub const MAX_AMOUNT_CENTS: i64 = ((1 << AMOUNT_BITS) - 1) * 100;
/// Latest expiry a code can carry (about 2053).
pub const MAX_EXPIRY_MS: i64 = EPOCH_MS + ((1i64 << EXPIRY_BITS) - 1) * MS_PER_HOUR;

/// The server secret. `Debug` never shows it.
#[derive(Clone)]
pub struct VoucherKey([u8; 32]);

impl std::fmt::Debug for VoucherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VoucherKey(<redacted>)")
    }
}

impl VoucherKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        VoucherKey(bytes)
    }

    /// Derives a key from a configured passphrase (any length >= 16 bytes).
    pub fn from_secret(secret: &str) -> Self {
        use sha2::Digest;
        let mut h = Sha256::new();
        h.update(b"nudge-voucher-key-v1");
        h.update(secret.as_bytes());
        VoucherKey(h.finalize().into())
    }

    pub fn random() -> Self {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        VoucherKey(b)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, claims: u64, session_id: &str) -> u64 {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        m.update(DOMAIN);
        m.update(&claims.to_be_bytes());
        m.update(session_id.as_bytes());
        let out = m.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        u64::from_be_bytes(first) >> (64 - MAC_BITS)
    }
}

/// What a valid code claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claims {
    pub nonce: u32,
    pub amount_cents: i64,
    /// Expiry rounded up to the hour.
    pub expires_by_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("not a voucher code (expected 16 symbols of 0-9 A-Z without I L O U)")]
    Malformed,
    #[error("voucher code does not verify for this session")]
    BadMac,
    #[error("amount {0} cents cannot be put in a code (whole euros up to 255)")]
    Amount(i64),
    #[error("expiry {0} cannot be put in a code")]
    Expiry(i64),
}

/// Mints the code for an offer. `nonce` makes codes of the same session,
/// tier and hour distinct (the ledger retries on a collision).
pub fn mint(
    key: &VoucherKey,
    session_id: &str,
    amount_cents: i64,
    expires_at_ms: i64,
    nonce: u32,
) -> Result<String, CodeError> {
    if amount_cents <= 0 || amount_cents % 100 != 0 || amount_cents > MAX_AMOUNT_CENTS {
        return Err(CodeError::Amount(amount_cents));
    }
    if !(EPOCH_MS..=MAX_EXPIRY_MS).contains(&expires_at_ms) {
        return Err(CodeError::Expiry(expires_at_ms));
    }
    let hour = (expires_at_ms - EPOCH_MS + MS_PER_HOUR - 1) / MS_PER_HOUR;
    let nonce = u64::from(nonce) & ((1 << NONCE_BITS) - 1);
    let claims = (nonce << (AMOUNT_BITS + EXPIRY_BITS))
        | (((amount_cents / 100) as u64) << EXPIRY_BITS)
        | hour as u64;
    let word: u128 = (u128::from(claims) << MAC_BITS) | u128::from(key.mac(claims, session_id));
    let mut out = String::with_capacity(SYMBOLS + 3);
    for i in 0..SYMBOLS {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let shift = 5 * (SYMBOLS - 1 - i);
        out.push(ALPHABET[((word >> shift) & 31) as usize] as char);
    }
    Ok(out)
}

fn symbol(c: char) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    let c = match c {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    ALPHABET
        .iter()
        .position(|a| *a as char == c)
        .map(|p| p as u8)
}

/// Normalises a typed code to its canonical `XXXX-XXXX-XXXX-XXXX` form.
pub fn normalise(code: &str) -> Result<String, CodeError> {
    let mut syms = Vec::with_capacity(SYMBOLS);
    for c in code.chars() {
        if c == '-' || c.is_whitespace() {
            continue;
        }
        syms.push(symbol(c).ok_or(CodeError::Malformed)?);
        if syms.len() > SYMBOLS {
            return Err(CodeError::Malformed);
        }
    }
    if syms.len() != SYMBOLS {
        return Err(CodeError::Malformed);
    }
    let mut out = String::with_capacity(SYMBOLS + 3);
    for (i, s) in syms.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(ALPHABET[*s as usize] as char);
    }
    Ok(out)
}

/// Verifies a (typed) code for a session and returns its claims.
pub fn verify(key: &VoucherKey, code: &str, session_id: &str) -> Result<Claims, CodeError> {
    let canonical = normalise(code)?;
    let mut word: u128 = 0;
    for c in canonical.chars().filter(|c| *c != '-') {
        word = (word << 5) | u128::from(symbol(c).ok_or(CodeError::Malformed)?);
    }
    let mac = (word & ((1u128 << MAC_BITS) - 1)) as u64;
    let claims = (word >> MAC_BITS) as u64;
    debug_assert!(claims < (1 << CLAIM_BITS));
    // Constant-time comparison of the truncated MAC.
    let expected = key.mac(claims, session_id);
    if (expected ^ mac) != 0 {
        return Err(CodeError::BadMac);
    }
    let hour = (claims & ((1 << EXPIRY_BITS) - 1)) as i64;
    let euros = ((claims >> EXPIRY_BITS) & ((1 << AMOUNT_BITS) - 1)) as i64;
    let nonce = (claims >> (AMOUNT_BITS + EXPIRY_BITS)) as u32;
    Ok(Claims {
        nonce,
        amount_cents: euros * 100,
        expires_by_ms: EPOCH_MS + hour * MS_PER_HOUR,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_795_341_600_000;

    #[test]
    fn round_trip_and_binding() {
        let key = VoucherKey::from_secret("test secret, not for production");
        let code = mint(&key, "s1", 1_000, NOW + 3_600_000 * 48 + 1, 77).unwrap();
        assert_eq!(code.len(), 19);
        let c = verify(&key, &code, "s1").unwrap();
        assert_eq!(c.amount_cents, 1_000);
        assert_eq!(c.nonce, 77);
        assert!(c.expires_by_ms > NOW + 3_600_000 * 48);
        assert!(c.expires_by_ms < NOW + 3_600_000 * 49 + 1);
        // Other session, other key: rejected.
        assert_eq!(verify(&key, &code, "s2"), Err(CodeError::BadMac));
        let other = VoucherKey::from_secret("another secret entirely");
        assert_eq!(verify(&other, &code, "s1"), Err(CodeError::BadMac));
        // Typed loosely: lower case, no dashes, O for 0.
        let typed = code.replace('-', " ").to_lowercase().replace('0', "o");
        assert_eq!(verify(&key, &typed, "s1"), Ok(c));
        // Malformed.
        for bad in ["", "ABC", "UUUU-UUUU-UUUU-UUUU", &format!("{code}0")] {
            assert_eq!(verify(&key, bad, "s1"), Err(CodeError::Malformed), "{bad}");
        }
    }

    #[test]
    fn amounts_and_expiry_must_fit() {
        let key = VoucherKey::from_secret("k".repeat(16).as_str());
        assert!(mint(&key, "s", 550, NOW, 1).is_err());
        assert!(mint(&key, "s", 25_600, NOW, 1).is_err());
        assert!(mint(&key, "s", 500, EPOCH_MS - 1, 1).is_err());
        assert!(mint(&key, "s", 25_500, MAX_EXPIRY_MS, 1).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = VoucherKey::from_bytes([7; 32]);
        assert_eq!(format!("{key:?}"), "VoucherKey(<redacted>)");
    }

    proptest! {
        /// Any single-symbol change of a valid code is rejected (tampering).
        #[test]
        fn tampered_codes_are_rejected(nonce in 0u32..(1 << 20), pos in 0usize..16, delta in 1u8..32) {
            let key = VoucherKey::from_secret("proptest secret value");
            let code = mint(&key, "s", 2_000, NOW, nonce).unwrap();
            let mut syms: Vec<u8> = code.bytes().filter(|b| *b != b'-').collect();
            let idx = ALPHABET.iter().position(|a| *a == syms[pos]).unwrap();
            syms[pos] = ALPHABET[(idx + delta as usize) % 32];
            let tampered = String::from_utf8(syms).unwrap();
            prop_assert!(verify(&key, &tampered, "s").is_err());
        }
    }
}
