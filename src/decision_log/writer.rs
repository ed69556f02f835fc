//! The decision log writer: a background thread appends [`LogRecord`]s as
//! JSON lines to rotated files under `<data_dir>/log/`.
//!
//! Requests never wait on disk: [`DecisionLog::log`] (and
//! [`DecisionLog::log_decision`], a decision in its cheap-to-build form) is
//! a non-blocking send into a bounded queue; the JSON is written on the
//! writer thread. Under normal load no line is lost (the queue is large and
//! the writer flushes whenever it catches up). The writer takes everything
//! queued at once and, after a busy batch, pauses briefly before the next,
//! so that a loaded service pays one wake-up and one write per burst of
//! records rather than per record. Under overload a
//! full queue drops the record, counts it ([`DecisionLog::dropped`]) and
//! warns, rather than slowing decisions down. Files rotate by size and by
//! hour: `decisions-YYYYMMDDTHH-<seq>.jsonl`, created 0640 (they hold
//! session ids and voucher codes). The thread stops after the last handle is
//! dropped, having written and flushed everything queued;
//! [`DecisionLog::flush`] waits for everything logged so far to reach the
//! OS (used by shutdown and by the report).
//!
//! **Retention** ([`Retention`]): the oldest files are deleted once they are
//! older than the retention age or the folder is over its size limit, at
//! start, after every rotation and when [`DecisionLog::prune`] is called (a
//! background task does, see `app::tasks`). A file's age is read from its
//! name (the hour it was started, on the injected clock); the file being
//! written is never deleted, nor any file not named by this writer.
//!
//! **Write failures** (a full disk): the record is dropped and counted; what
//! the buffer holds stays there and is written when the disk accepts it
//! again, so a file never gets half a line from a failure. Failures are
//! logged once per interval with a count.

use crate::decision_log::entry::DecisionEntry;
use crate::decision_log::LogRecord;
use crate::files::{set_mode, DiskFull};
use crate::throttle::LogThrottle;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Mode of a log file: the owner writes, the owner's group (an analyst
/// running the trainer or the report) reads, nobody else.
pub const LOG_FILE_MODE: u32 = 0o640;
/// Repeating write failures: one line per interval.
const LOG_EVERY: Duration = Duration::from_secs(10);
const MS_PER_HOUR: i64 = 3_600_000;
/// Messages the writer takes off the queue at once.
const BATCH: usize = 1_024;
/// After a busy batch the writer waits this long before taking the next:
/// a loaded service then pays one wake-up and one write for a burst of
/// records instead of one per record (the records reach the OS this much
/// later; requests never wait on it).
const LINGER: Duration = Duration::from_millis(2);
/// The file buffer: a burst of records goes to the OS in one write.
const FILE_BUFFER: usize = 256 * 1024;

enum Msg {
    Record(Box<LogRecord>),
    Decision(Box<DecisionEntry>),
    Flush(oneshot::Sender<()>),
    Prune(oneshot::Sender<()>),
}

struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    queue_full: LogThrottle,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            queue_full: LogThrottle::new(LOG_EVERY),
        }
    }
}

/// Handle to the log. Cheap to clone.
#[derive(Clone)]
pub struct DecisionLog {
    tx: Option<mpsc::Sender<Msg>>,
    counters: Arc<Counters>,
    dir: Option<Arc<PathBuf>>,
}

/// How much of the log is kept: files are deleted, oldest first, once all
/// their records are older than `max_age` or while the folder holds more
/// than `max_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
}

/// What one line is written from.
enum Line<'a> {
    Record(&'a LogRecord),
    Decision(&'a DecisionEntry),
}

/// Settings of the writer.
#[derive(Clone, Debug)]
pub struct LogSettings {
    pub dir: PathBuf,
    /// Rotate a file when it exceeds this size.
    pub rotate_bytes: u64,
    /// Records queued at most before dropping.
    pub queue: usize,
    /// `None`: every file is kept.
    pub retention: Option<Retention>,
    /// While on, every write fails as on a full disk (fault drills, tests).
    pub disk_full: DiskFull,
}

/// The file being written.
struct Current {
    out: std::io::BufWriter<std::fs::File>,
    size: u64,
    /// Start of the hour the file was started in (ms): a record of a later
    /// hour goes to a new file.
    hour_ms: i64,
    path: PathBuf,
}

struct Writer {
    dir: PathBuf,
    rotate_bytes: u64,
    file: Option<Current>,
    seq: u64,
    clock: Arc<dyn crate::clock::Clock>,
    retention: Option<Retention>,
    disk_full: DiskFull,
    failed: LogThrottle,
    dropped: u64,
    /// The line being written (reused: one allocation for the writer's life).
    line: Vec<u8>,
}

fn hour_tag(ms: i64) -> String {
    use chrono::TimeZone;
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .format("%Y%m%dT%H")
        .to_string()
}

/// A file this writer named: its path, size, the start of its hour (ms) and
/// sequence number.
struct LogFile {
    path: PathBuf,
    len: u64,
    hour_ms: i64,
    seq: u64,
}

/// `decisions-YYYYMMDDTHH-<seq>.jsonl` -> (start of the hour in ms, seq).
fn parse_name(name: &str) -> Option<(i64, u64)> {
    let rest = name.strip_prefix("decisions-")?.strip_suffix(".jsonl")?;
    let (tag, seq) = rest.split_once('-')?;
    let (date, hour) = tag.split_once('T')?;
    let date = chrono::NaiveDate::parse_from_str(date, "%Y%m%d").ok()?;
    let hour: u32 = hour.parse().ok()?;
    let start = date.and_hms_opt(hour, 0, 0)?.and_utc().timestamp_millis();
    Some((start, seq.parse().ok()?))
}

/// The log files of `dir` (not its subfolders), oldest first.
fn log_files(dir: &Path) -> std::io::Result<Vec<LogFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((hour_ms, seq)) = parse_name(&name.to_string_lossy()) else {
            continue;
        };
        let meta = entry.metadata()?;
        if meta.is_file() {
            files.push(LogFile {
                path: entry.path(),
                len: meta.len(),
                hour_ms,
                seq,
            });
        }
    }
    files.sort_by_key(|f| (f.hour_ms, f.seq));
    Ok(files)
}

impl Writer {
    fn write(&mut self, msg: &Line) -> std::io::Result<()> {
        if self.disk_full.is_set() {
            return Err(DiskFull::io_error());
        }
        self.line.clear();
        match msg {
            Line::Record(rec) => serde_json::to_writer(&mut self.line, rec),
            Line::Decision(d) => d.write_json(&mut self.line),
        }
        .map_err(std::io::Error::other)?;
        self.line.push(b'\n');
        let now = self.clock.now_ms();
        let hour_ms = now.div_euclid(MS_PER_HOUR) * MS_PER_HOUR;
        let rotate = match &self.file {
            None => true,
            Some(c) => c.size >= self.rotate_bytes || c.hour_ms != hour_ms,
        };
        if rotate {
            let tag = hour_tag(now);
            // A file whose buffer cannot be flushed is kept (and this record
            // dropped): closing it would lose the buffered lines.
            if let Some(c) = self.file.as_mut() {
                c.out.flush()?;
            }
            self.file = None;
            let path = loop {
                self.seq += 1;
                let p = self
                    .dir
                    .join(format!("decisions-{tag}-{:04}.jsonl", self.seq));
                if !p.exists() {
                    break p;
                }
            };
            let mut opts = std::fs::OpenOptions::new();
            opts.create_new(true).append(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(LOG_FILE_MODE);
            }
            let f = opts.open(&path)?;
            if let Err(e) = set_mode(&path, LOG_FILE_MODE) {
                // No empty file left behind per failed record.
                drop(f);
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
            self.file = Some(Current {
                out: std::io::BufWriter::with_capacity(FILE_BUFFER, f),
                size: 0,
                hour_ms,
                path,
            });
            self.prune();
        }
        let Some(c) = self.file.as_mut() else {
            return Err(std::io::Error::other("no decision log file open"));
        };
        c.out.write_all(&self.line)?;
        c.size += self.line.len() as u64;
        Ok(())
    }

    /// Writes one record, counting it as written or dropped.
    fn record(&mut self, line: &Line, c: &Counters) {
        match self.write(line) {
            Ok(()) => {
                c.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("nudge_decision_log_dropped_total", "cause" => "write failed")
                    .increment(1);
                self.dropped += 1;
                self.failure(&e);
            }
        }
    }

    fn flush(&mut self) {
        if let Some(c) = self.file.as_mut() {
            if let Err(e) = c.out.flush() {
                self.failure(&e);
            }
        }
    }

    /// One line per interval for write and flush failures.
    fn failure(&self, e: &std::io::Error) {
        if let Some(count) = self.failed.hit() {
            tracing::error!(error = %e, count, dropped = self.dropped, "decision log write failed");
        }
    }

    /// Deletes the oldest files past the retention age and size, never the
    /// file being written.
    fn prune(&mut self) {
        let Some(r) = self.retention else { return };
        // The sizes on disk include what is buffered.
        self.flush();
        let files = match log_files(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                self.failure(&e);
                return;
            }
        };
        let max_age_ms = i64::try_from(r.max_age.as_millis()).unwrap_or(i64::MAX);
        let cutoff = self.clock.now_ms().saturating_sub(max_age_ms);
        let current = self.file.as_ref().map(|c| c.path.clone());
        let mut total: u64 = files.iter().map(|f| f.len).sum();
        let (mut deleted, mut freed) = (0u64, 0u64);
        for f in &files {
            if current.as_ref() == Some(&f.path) {
                continue;
            }
            // Every record of a file is from its hour.
            let too_old = f.hour_ms + MS_PER_HOUR <= cutoff;
            if !too_old && total <= r.max_bytes {
                break;
            }
            match std::fs::remove_file(&f.path) {
                Ok(()) => {
                    total -= f.len;
                    deleted += 1;
                    freed += f.len;
                }
                Err(e) => self.failure(&e),
            }
        }
        if deleted > 0 {
            tracing::info!(
                files = deleted,
                bytes = freed,
                kept_bytes = total,
                "old decision log files deleted"
            );
        }
    }
}

impl DecisionLog {
    /// A log that writes nothing (logging disabled).
    pub fn disabled() -> Self {
        DecisionLog {
            tx: None,
            counters: Arc::default(),
            dir: None,
        }
    }

    /// A handle that writes nothing but knows the directory (for reading
    /// an existing log, e.g. `nudge report`).
    pub fn reader(dir: PathBuf) -> Self {
        DecisionLog {
            tx: None,
            counters: Arc::default(),
            dir: Some(Arc::new(dir)),
        }
    }

    /// Starts the writer thread (which first applies the retention to what
    /// an earlier run left).
    pub fn start(
        settings: &LogSettings,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&settings.dir)?;
        let (tx, mut rx) = mpsc::channel::<Msg>(settings.queue.max(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let mut w = Writer {
            dir: settings.dir.clone(),
            rotate_bytes: settings.rotate_bytes.max(1),
            file: None,
            seq: 0,
            clock,
            retention: settings.retention,
            disk_full: settings.disk_full.clone(),
            failed: LogThrottle::new(LOG_EVERY),
            dropped: 0,
            line: Vec::with_capacity(4 * 1024),
        };
        // The writer logs where its starter logs.
        let dispatch = crate::throttle::current_dispatch();
        std::thread::Builder::new()
            .name("nudge-log".into())
            .spawn(move || {
                crate::throttle::with_dispatch(&dispatch, || {
                    w.prune();
                    let mut msgs = Vec::with_capacity(BATCH);
                    while rx.blocking_recv_many(&mut msgs, BATCH) > 0 {
                        let busy = msgs.len() > 1;
                        for msg in msgs.drain(..) {
                            match msg {
                                Msg::Record(rec) => w.record(&Line::Record(&rec), &c),
                                Msg::Decision(d) => w.record(&Line::Decision(&d), &c),
                                Msg::Flush(ack) => {
                                    w.flush();
                                    let _ = ack.send(());
                                }
                                Msg::Prune(ack) => {
                                    w.prune();
                                    let _ = ack.send(());
                                }
                            }
                        }
                        if rx.is_empty() {
                            w.flush();
                        }
                        if busy {
                            std::thread::sleep(LINGER);
                        }
                    }
                    w.flush();
                    tracing::debug!("decision log writer stopped");
                })
            })?;
        Ok(DecisionLog {
            tx: Some(tx),
            counters,
            dir: Some(Arc::new(settings.dir.clone())),
        })
    }

    /// Whether records are written at all (callers skip building them when
    /// not).
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record; never blocks. A full queue drops it (counted).
    pub fn log(&self, rec: LogRecord) {
        if self.tx.is_some() {
            self.send(Msg::Record(Box::new(rec)));
        }
    }

    /// Queues a decision, written as its [`DecisionEntry::to_record`];
    /// never blocks. A full queue drops it (counted).
    pub fn log_decision(&self, entry: DecisionEntry) {
        if self.tx.is_some() {
            self.send(Msg::Decision(Box::new(entry)));
        }
    }

    fn send(&self, msg: Msg) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(msg).is_err() {
            let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::counter!("nudge_decision_log_dropped_total", "cause" => "queue full")
                .increment(1);
            if let Some(count) = self.counters.queue_full.hit() {
                tracing::warn!(
                    count,
                    dropped = n,
                    "decision log queue full, records dropped"
                );
            }
        }
    }

    /// Waits until everything logged before this call is written and
    /// flushed to the OS.
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack, rx) = oneshot::channel();
        if tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Applies the retention now (after everything logged before this
    /// call) and waits for it.
    pub async fn prune(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack, rx) = oneshot::channel();
        if tx.send(Msg::Prune(ack)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Records waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.tx
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref().map(PathBuf::as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::decision_log::reader::read_dir;
    use crate::decision_log::{OutcomeRecord, LOG_FORMAT_VERSION};

    fn outcome(i: usize) -> LogRecord {
        LogRecord::Outcome(OutcomeRecord {
            v: LOG_FORMAT_VERSION,
            at_ms: i as i64,
            session_id: format!("s{i}"),
            converted: i.is_multiple_of(2),
            order_value_cents: 100,
        })
    }

    #[tokio::test]
    async fn writes_rotates_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_795_341_600_000));
        let log = DecisionLog::start(
            &LogSettings {
                dir: dir.path().to_owned(),
                rotate_bytes: 2_000,
                queue: 10_000,
                retention: None,
                disk_full: DiskFull::default(),
            },
            clock.clone(),
        )
        .unwrap();
        for i in 0..100 {
            log.log(outcome(i));
        }
        clock.advance(3_600_000);
        for i in 100..150 {
            log.log(outcome(i));
        }
        log.flush().await;
        assert_eq!(log.written(), 150);
        assert_eq!(log.dropped(), 0);
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(files > 2, "rotated by size and hour: {files} files");
        let back = read_dir(dir.path()).unwrap();
        assert_eq!(back, (0..150).map(outcome).collect::<Vec<_>>());
    }

    #[test]
    fn reads_the_logs_of_several_replicas_from_their_folders() {
        let dir = tempfile::tempdir().unwrap();
        for (sub, range) in [("replica-a", 0..3), ("replica-b", 3..5)] {
            let d = dir.path().join(sub);
            std::fs::create_dir(&d).unwrap();
            let text: String = range
                .map(|i| serde_json::to_string(&outcome(i)).unwrap() + "\n")
                .collect();
            // The same file name in both folders, as two replicas write.
            std::fs::write(d.join("decisions-2026112210-0001.jsonl"), text).unwrap();
        }
        std::fs::create_dir(dir.path().join(".hidden")).unwrap();
        std::fs::write(dir.path().join(".hidden/x.jsonl"), "not json\n").unwrap();
        assert_eq!(
            read_dir(dir.path()).unwrap(),
            (0..5).map(outcome).collect::<Vec<_>>()
        );
    }

    fn start(dir: &Path, clock: Arc<ManualClock>, rotate_bytes: u64, r: Retention) -> DecisionLog {
        DecisionLog::start(
            &LogSettings {
                dir: dir.to_owned(),
                rotate_bytes,
                queue: 10_000,
                retention: Some(r),
                disk_full: DiskFull::default(),
            },
            clock,
        )
        .unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    const DAY_MS: i64 = 86_400_000;

    #[tokio::test]
    async fn retention_deletes_files_past_the_age_oldest_first_but_never_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        // Not the writer's: never touched.
        std::fs::write(dir.path().join("notes.txt"), "keep").unwrap();
        std::fs::write(dir.path().join("decisions-export.jsonl"), "").unwrap();
        let t0 = 1_795_341_600_000; // 2026-11-22T10:00Z
        let clock = Arc::new(ManualClock::new(t0));
        let r = Retention {
            max_age: Duration::from_millis(2 * DAY_MS as u64),
            max_bytes: u64::MAX,
        };
        let log = start(dir.path(), clock.clone(), 1 << 20, r);
        // One file a day for six days; each new file applies the retention.
        for day in 0..6 {
            log.log(outcome(day));
            log.flush().await;
            clock.advance(DAY_MS);
        }
        clock.advance(-DAY_MS);
        log.prune().await;
        // Day 5 is now: days 0-2 ended more than two days ago.
        assert_eq!(
            names(dir.path()),
            [
                "decisions-20261125T10-0004.jsonl",
                "decisions-20261126T10-0005.jsonl",
                "decisions-20261127T10-0006.jsonl",
                "decisions-export.jsonl",
                "notes.txt",
            ]
        );
        // Ten quiet days later only the file being written is left.
        clock.advance(10 * DAY_MS);
        log.prune().await;
        assert_eq!(
            names(dir.path()),
            [
                "decisions-20261127T10-0006.jsonl",
                "decisions-export.jsonl",
                "notes.txt",
            ]
        );
        // A restart applies the retention to what it finds.
        drop(log);
        std::fs::write(dir.path().join("decisions-20261101T00-0001.jsonl"), "").unwrap();
        let log = start(dir.path(), clock.clone(), 1 << 20, r);
        log.flush().await;
        assert_eq!(names(dir.path()), ["decisions-export.jsonl", "notes.txt"]);
    }

    #[tokio::test]
    async fn retention_keeps_the_folder_under_its_size_deleting_the_oldest_files() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_795_341_600_000));
        // Every record its own file (rotation above 1 byte), about 100 bytes.
        let line = serde_json::to_vec(&outcome(1)).unwrap().len() as u64 + 1;
        let r = Retention {
            max_age: Duration::from_secs(14 * 86_400),
            max_bytes: 3 * line + line / 2,
        };
        let log = start(dir.path(), clock.clone(), 1, r);
        for i in 0..10 {
            log.log(outcome(2 * i + 1)); // odd: all unconverted
        }
        log.prune().await;
        let back = read_dir(dir.path()).unwrap();
        assert_eq!(back, [15, 17, 19].map(outcome), "the newest three files");
        let total: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= r.max_bytes, "{total} > {}", r.max_bytes);
        // A limit below one file keeps the file being written.
        drop(log);
        let tiny = Retention { max_bytes: 1, ..r };
        let log = start(dir.path(), clock.clone(), 1 << 20, tiny);
        log.log(outcome(21));
        log.flush().await;
        log.prune().await;
        assert_eq!(read_dir(dir.path()).unwrap(), [outcome(21)]);
    }

    #[tokio::test]
    async fn a_full_disk_drops_and_counts_records_and_writing_resumes_when_it_clears() {
        let dir = tempfile::tempdir().unwrap();
        let disk_full = DiskFull::default();
        let log = DecisionLog::start(
            &LogSettings {
                dir: dir.path().to_owned(),
                rotate_bytes: 1 << 20,
                queue: 10_000,
                retention: None,
                disk_full: disk_full.clone(),
            },
            Arc::new(ManualClock::new(1_795_341_600_000)),
        )
        .unwrap();
        log.log(outcome(0));
        log.flush().await;
        disk_full.set(true);
        for i in 1..100 {
            log.log(outcome(i));
        }
        log.flush().await;
        assert_eq!((log.written(), log.dropped()), (1, 99));
        disk_full.set(false);
        log.log(outcome(100));
        log.flush().await;
        assert_eq!(read_dir(dir.path()).unwrap(), [outcome(0), outcome(100)]);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn log_files_are_created_0640() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_795_341_600_000));
        let r = Retention {
            max_age: Duration::from_secs(86_400),
            max_bytes: u64::MAX,
        };
        let log = start(dir.path(), clock.clone(), 1, r);
        for i in 0..3 {
            log.log(outcome(i));
        }
        log.flush().await;
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let mode = e.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, LOG_FILE_MODE);
        }
    }
}
