//! Small file helpers shared by the service, the simulator and the trainer.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Who may read a file written by [`atomic_write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The process's umask decides (models, reports, pacing state).
    Default,
    /// The owner only (0600 on Unix): secrets such as the voucher key.
    OwnerOnly,
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new
/// one, never a part: a temporary file in the same folder (created if
/// missing), synced, then renamed over `path`. The temporary file is removed
/// when any step fails.
pub fn atomic_write(path: &Path, bytes: &[u8], access: Access) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", path.display())))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if access == Access::OwnerOnly {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A switch that makes the service's writers (the ledger's commits, the
/// decision log's writes) fail as on a full disk while it is on, for fault
/// drills and tests: what happens to decisions, money and logs when the data
/// disk fills up, and that the service recovers by itself when it is off
/// again. Off unless someone turns it on; clones share the switch.
#[derive(Clone, Debug, Default)]
pub struct DiskFull(Arc<AtomicBool>);

impl DiskFull {
    pub fn set(&self, full: bool) {
        self.0.store(full, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The error a write gets while the switch is on.
    pub fn io_error() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "no space left on device (disk-full drill)",
        )
    }
}

/// Sets a file's permission bits (Unix; a no-op elsewhere), whatever the
/// umask was when the file was created: files that hold voucher codes,
/// session ids or secrets must not be readable by every local user.
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("m.json");
        atomic_write(&path, b"one", Access::Default).unwrap();
        atomic_write(&path, b"two", Access::Default).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn owner_only_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("voucher.key");
        atomic_write(&path, b"secret", Access::OwnerOnly).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
