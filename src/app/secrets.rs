//! The voucher secret that signs and checks codes.

use crate::app::ServerError;
use crate::config::{LedgerBackend, Settings};
use crate::domain::voucher::VoucherKey;
use crate::files::{atomic_write, Access};

/// File (under the data directory) holding the generated voucher key.
pub const VOUCHER_KEY_FILE: &str = "voucher.key";

/// The voucher secret: the configured one, else `env_secret` (the
/// `NUDGE_VOUCHER_SECRET` environment variable, read by the binary), else a
/// random key generated once into `<data_dir>/voucher.key` (mode 0600) so
/// that codes survive restarts with zero set-up.
pub fn voucher_key(
    settings: &Settings,
    env_secret: Option<&str>,
) -> Result<VoucherKey, ServerError> {
    if let Some(s) = &settings.voucher_secret {
        return Ok(VoucherKey::from_secret(&s.0));
    }
    let env_secret = env_secret.filter(|s| !s.is_empty());
    if env_secret.is_none() && settings.ledger_backend == LedgerBackend::Redis {
        // A key generated into one replica's data directory would make the
        // codes it mints unredeemable at every other replica.
        return Err(ServerError::Setup(
            "ledger.backend = \"redis\" needs one voucher secret shared by every replica: set voucher.secret or NUDGE_VOUCHER_SECRET".into(),
        ));
    }
    if let Some(s) = env_secret {
        if s.len() < crate::config::MIN_SECRET_BYTES {
            return Err(ServerError::Setup(format!(
                "NUDGE_VOUCHER_SECRET must be at least {} bytes",
                crate::config::MIN_SECRET_BYTES
            )));
        }
        return Ok(VoucherKey::from_secret(s));
    }
    let path = settings.data_dir.join(VOUCHER_KEY_FILE);
    let io = |e: std::io::Error| ServerError::Setup(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            owner_only(&path);
            let bytes = decode_hex(text.trim()).ok_or_else(|| {
                ServerError::Setup(format!("{} is not 64 hex digits", path.display()))
            })?;
            Ok(VoucherKey::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&settings.data_dir).map_err(io)?;
            let key = VoucherKey::random();
            let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
            atomic_write(&path, hex.as_bytes(), Access::OwnerOnly).map_err(io)?;
            tracing::info!(path = %path.display(), "generated a voucher key");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// A key file written by an earlier build (or copied in) may be readable by
/// others: it is the secret that mints valid codes, so it becomes 0600.
fn owner_only(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            match crate::files::set_mode(path, 0o600) {
                Ok(()) => {
                    tracing::warn!(path = %path.display(), "voucher key was readable by others, now owner-only (0600)")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "voucher key is readable by others and cannot be made owner-only")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
