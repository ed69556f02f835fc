//! The one reader of decision-log folders, for the service's ROI report and
//! for the trainer.
//!
//! A log is one file, or a folder whose `*.jsonl` files, and those of its
//! non-hidden subfolders, are read in path order: the writer names files
//! `decisions-<hour>-<seq>.jsonl`, so path order is write order within a
//! folder, and several replicas' logs sit side by side, one folder each
//! (their file names repeat). Hidden files and folders, and files of any
//! other extension, are not logs. Blank lines are skipped; every other line
//! must be a record of this build's format, or the error names file and line,
//! except a last line cut short (no newline, not a record: a write that a
//! full disk or a crash interrupted), which is skipped with a warning.

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

/// The records of one file's bytes, in order. A last line without its
/// newline that is not a record is a write cut short (a full disk, a crash)
/// and is skipped with a warning; every complete line must be a record.
pub fn parse_records(path: &Path, bytes: &[u8]) -> Result<Vec<LogRecord>, ReadError> {
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let (bytes, tail) = bytes.split_at(complete);
    let mut out = parse_lines(path, bytes)?;
    if !tail.iter().all(u8::is_ascii_whitespace) {
        match parse_lines(path, tail) {
            Ok(records) => out.extend(records),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, bytes = tail.len(), "unterminated last line skipped")
            }
        }
    }
    Ok(out)
}

fn parse_lines(path: &Path, bytes: &[u8]) -> Result<Vec<LogRecord>, ReadError> {
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

/// One non-blank line of a log file, as [`each_line`] hands it over.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    pub path: &'a Path,
    /// 1-based line number in the file.
    pub number: usize,
    pub text: &'a str,
}

/// Parses one line as `T` (a [`LogRecord`], or a lighter view of one that
/// borrows from the line and ignores what it does not need), with the
/// error naming file and line. `version` reads the record's `v`.
pub fn parse_line<'a, T: serde::Deserialize<'a>>(
    line: Line<'a>,
    version: impl FnOnce(&T) -> u32,
) -> Result<T, ReadError> {
    let record: T = serde_json::from_str(line.text).map_err(|source| ReadError::Parse {
        path: line.path.to_owned(),
        line: line.number,
        source,
    })?;
    let found = version(&record);
    if found != LOG_FORMAT_VERSION {
        return Err(ReadError::Version {
            path: line.path.to_owned(),
            line: line.number,
            found,
        });
    }
    Ok(record)
}

/// Streams the files of [`log_files`]`(path)` line by line, in read order,
/// holding one line at a time: `bytes` gets every byte read (for a lineage
/// hash, blank lines included) and `each` every non-blank line. A last line
/// without its newline whose `each` fails to parse it ([`ReadError::Parse`]
/// or [`ReadError::Version`]) is a write cut short and is skipped with a
/// warning, as [`parse_records`] does; any other error stops the read.
///
/// Returns the bytes read from each file. With `lengths` (what an earlier
/// read returned), each file is read only up to that length, so a second
/// pass over a folder the service is still appending to sees exactly the
/// lines the first pass saw.
pub fn each_line(
    files: &[PathBuf],
    lengths: Option<&[u64]>,
    mut bytes: impl FnMut(&[u8]),
    mut each: impl FnMut(Line<'_>) -> Result<(), ReadError>,
) -> Result<Vec<u64>, ReadError> {
    use std::io::{BufRead, Read};
    let mut buf = Vec::with_capacity(1 << 12);
    let mut read = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let io = |source| ReadError::Io {
            path: f.clone(),
            source,
        };
        let file = std::fs::File::open(f).map_err(io)?;
        let limit = lengths.and_then(|l| l.get(i).copied()).unwrap_or(u64::MAX);
        let mut r = std::io::BufReader::with_capacity(1 << 16, file.take(limit));
        let mut total = 0u64;
        let mut number = 0usize;
        loop {
            buf.clear();
            let n = r.read_until(b'\n', &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            number += 1;
            total += n as u64;
            bytes(&buf);
            let terminated = buf.last() == Some(&b'\n');
            let text = match std::str::from_utf8(&buf) {
                Ok(t) => t,
                // A torn last line may end inside a character.
                Err(_) if !terminated => {
                    tracing::warn!(path = %f.display(), bytes = n, "unterminated last line skipped");
                    continue;
                }
                Err(_) => return Err(ReadError::NotUtf8 { path: f.clone() }),
            };
            if text.trim().is_empty() {
                continue;
            }
            let line = Line {
                path: f,
                number,
                text: text.trim_end_matches(['\n', '\r']),
            };
            match each(line) {
                Ok(()) => {}
                Err(e @ (ReadError::Parse { .. } | ReadError::Version { .. })) if !terminated => {
                    tracing::warn!(path = %f.display(), error = %e, bytes = n, "unterminated last line skipped")
                }
                Err(e) => return Err(e),
            }
        }
        read.push(total);
    }
    Ok(read)
}

/// Where a line sits: the file (an id given by [`Tail`]) and the byte
/// offset of the line's start. Records sort in read order by (file path,
/// offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinePos {
    pub file: u32,
    pub offset: u64,
}

/// One file as a [`Tail`] knows it.
#[derive(Debug)]
struct Tailed {
    id: u32,
    /// Bytes read: always the end of a complete line.
    read: u64,
    /// Lines read (for error messages).
    lines: usize,
}

/// What one [`Tail::pass`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailPass {
    /// Bytes read in this pass (complete lines only).
    pub bytes: u64,
    /// Non-blank lines handed over.
    pub lines: u64,
}

/// An incremental reader of a log folder: each pass reads only the bytes
/// appended since the previous one, file by file in read order, and only
/// complete lines (a line still being written is read by the next pass).
/// New files (rotation, a new replica's folder) are read from their start.
/// A file that shrank was rewritten: [`Tail::pass`] says so and the caller
/// starts over with a new `Tail`. A file that vanished (deleted by log
/// retention) is forgotten: what was read from it stays read.
#[derive(Debug, Default)]
pub struct Tail {
    files: std::collections::HashMap<PathBuf, Tailed>,
    paths: Vec<PathBuf>,
}

impl Tail {
    /// The path of a file id handed out by [`Tail::pass`].
    pub fn path(&self, file: u32) -> &Path {
        &self.paths[file as usize]
    }

    /// Bytes read so far, over every file.
    pub fn bytes_read(&self) -> u64 {
        self.files.values().map(|f| f.read).sum()
    }

    /// Reads what was appended under `path` since the last pass, handing
    /// each non-blank line to `each` with its position and 1-based line
    /// number. `Ok(None)`: a file read before shrank, nothing was handed
    /// over; start over.
    pub fn pass(
        &mut self,
        path: &Path,
        mut each: impl FnMut(&Path, usize, LinePos, &str) -> Result<(), ReadError>,
    ) -> Result<Option<TailPass>, ReadError> {
        use std::io::{BufRead, Read, Seek};
        let listed = log_files(path)?;
        let mut files = Vec::with_capacity(listed.len());
        let mut lens = Vec::with_capacity(listed.len());
        for f in listed {
            let len = match std::fs::metadata(&f) {
                Ok(m) => m.len(),
                // Deleted by retention since it was listed: vanished.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ReadError::Io { path: f, source }),
            };
            if self.files.get(&f).is_some_and(|t| t.read > len) {
                return Ok(None);
            }
            files.push(f);
            lens.push(len);
        }
        // A file deleted by retention is forgotten; what was read from it
        // stays counted.
        let listed: std::collections::HashSet<&PathBuf> = files.iter().collect();
        self.files.retain(|k, _| listed.contains(k));
        let mut done = TailPass::default();
        let mut line = Vec::new();
        for (f, len) in files.iter().zip(lens) {
            let next_id = self.paths.len() as u32;
            let t = self.files.entry(f.clone()).or_insert_with(|| Tailed {
                id: next_id,
                read: 0,
                lines: 0,
            });
            if t.id == next_id {
                self.paths.push(f.clone());
            }
            if t.read >= len {
                continue;
            }
            let io = |source| ReadError::Io {
                path: f.clone(),
                source,
            };
            let mut file = match std::fs::File::open(f) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            file.seek(std::io::SeekFrom::Start(t.read)).map_err(io)?;
            // Only what was there when the pass began: a growing file is
            // not chased.
            let mut r = std::io::BufReader::with_capacity(1 << 16, file.take(len - t.read));
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line).map_err(io)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                let pos = LinePos {
                    file: t.id,
                    offset: t.read,
                };
                t.read += n as u64;
                t.lines += 1;
                done.bytes += n as u64;
                let text = std::str::from_utf8(&line)
                    .map_err(|_| ReadError::NotUtf8 { path: f.clone() })?;
                if text.trim().is_empty() {
                    continue;
                }
                done.lines += 1;
                each(f, t.lines, pos, text)?;
            }
        }
        Ok(Some(done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::OutcomeRecord;

    #[test]
    fn a_torn_last_line_is_skipped_but_a_broken_complete_line_is_an_error() {
        let rec = LogRecord::Outcome(OutcomeRecord {
            v: LOG_FORMAT_VERSION,
            at_ms: 1,
            session_id: "s".into(),
            converted: true,
            order_value_cents: 100,
        });
        let line = serde_json::to_string(&rec).unwrap();
        let p = Path::new("decisions-20261122T10-0001.jsonl");
        // Cut short mid-record (mid-character too): the complete lines count.
        let mut torn = format!("{line}\n{line}\n").into_bytes();
        torn.extend_from_slice(&line.as_bytes()[..line.len() / 2]);
        torn.extend_from_slice(&"é".as_bytes()[..1]);
        assert_eq!(parse_records(p, &torn).unwrap(), [rec.clone(), rec.clone()]);
        // A complete last record without its newline is a record.
        let whole = format!("{line}\n{line}");
        assert_eq!(parse_records(p, whole.as_bytes()).unwrap().len(), 2);
        // A broken line followed by others is an error naming it.
        let broken = format!("{line}\n{{\"type\":\n{line}\n");
        assert!(matches!(
            parse_records(p, broken.as_bytes()),
            Err(ReadError::Parse { line: 2, .. })
        ));
    }
}
