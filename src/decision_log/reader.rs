//! The one reader of decision-log folders, for the service's ROI report and
//! for the trainer.
//!
//! A log is one file, or a folder whose `*.jsonl` files, and those of its
//! non-hidden subfolders, are read in path order: the writer names files
//! `decisions-<hour>-<seq>.jsonl`, so path order is write order within a
//! folder, and several replicas' logs sit side by side, one folder each
//! (their file names repeat). Hidden files and folders, and files of any
//! other extension, are not logs. Blank lines are skipped; every other line
//! must be a record of this build's format, or the error names file and line.

use crate::decision_log::{LogRecord, LOG_FORMAT_VERSION};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: not a log record: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path} line {line}: log format v{found}, this build reads v{LOG_FORMAT_VERSION}")]
    Version {
        path: PathBuf,
        line: usize,
        found: u32,
    },
    #[error("{path} is not UTF-8")]
    NotUtf8 { path: PathBuf },
}

/// The log files under `path`, in read order: `path` itself when it is a
/// file, else the `*.jsonl` files of the folder and its non-hidden
/// subfolders (possibly none).
pub fn log_files(path: &Path) -> Result<Vec<PathBuf>, ReadError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
        let io = |source| ReadError::Io {
            path: dir.to_owned(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let p = entry.map_err(io)?.path();
            if p.file_name()
                .is_none_or(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.is_file() && p.extension().is_some_and(|x| x == "jsonl") {
                out.push(p);
            }
        }
        Ok(())
    }
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    walk(path, &mut files)?;
    files.sort();
    Ok(files)
}

/// The records of one file's bytes, in order.
pub fn parse_records(path: &Path, bytes: &[u8]) -> Result<Vec<LogRecord>, ReadError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ReadError::NotUtf8 {
        path: path.to_owned(),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: LogRecord = serde_json::from_str(line).map_err(|source| ReadError::Parse {
            path: path.to_owned(),
            line: i + 1,
            source,
        })?;
        let found = record.format_version();
        if found != LOG_FORMAT_VERSION {
            return Err(ReadError::Version {
                path: path.to_owned(),
                line: i + 1,
                found,
            });
        }
        out.push(record);
    }
    Ok(out)
}

/// Reads one file's bytes.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Every record of every log file under `path`, in read order.
pub fn read_dir(path: &Path) -> Result<Vec<LogRecord>, ReadError> {
    let mut out = Vec::new();
    for f in log_files(path)? {
        out.extend(parse_records(&f, &read_file(&f)?)?);
    }
    Ok(out)
}
