//! What every file the trainer writes shares, so no command invents its
//! own: the one atomic write (the service's, with the path in the error),
//! the model file's JSON form, and the lineage date.

use anyhow::{Context as _, Result};
use nudge::domain::model::ModelFile;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    nudge::files::atomic_write(path, bytes, nudge::files::Access::Default)
        .with_context(|| format!("write {}", path.display()))
}

/// Serialises a model file as pretty JSON with a trailing newline.
pub fn model_json(model: &ModelFile) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(model)?;
    v.push(b'\n');
    Ok(v)
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds.
pub fn utc_date(unix_s: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = unix_s.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Today's UTC date, or the date of `SOURCE_DATE_EPOCH` when set (for
/// reproducible model files).
pub fn created_at() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    utc_date(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_704_067_199), "2023-12-31");
        assert_eq!(utc_date(1_709_251_200), "2024-03-01");
    }
}
