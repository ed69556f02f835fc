//! The decision log writer: a background thread appends [`LogRecord`]s as
//! JSON lines to rotated files under `<data_dir>/log/`.
//!
//! Requests never wait on disk: [`DecisionLog::log`] is a non-blocking send
//! into a bounded queue. Under normal load no line is lost (the queue is
//! large and the writer flushes whenever it catches up); under overload a
//! full queue drops the record, counts it ([`DecisionLog::dropped`]) and
//! warns, rather than slowing decisions down. Files rotate by size and by
//! hour: `decisions-YYYYMMDDTHH-<seq>.jsonl`. The thread stops after the
//! last handle is dropped, having written and flushed everything queued;
//! [`DecisionLog::flush`] waits for everything logged so far to reach the
//! OS (used by shutdown and by the report).

use crate::decision_log::LogRecord;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

enum Msg {
    Record(Box<LogRecord>),
    Flush(oneshot::Sender<()>),
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
}

/// Handle to the log. Cheap to clone.
#[derive(Clone)]
pub struct DecisionLog {
    tx: Option<mpsc::Sender<Msg>>,
    counters: Arc<Counters>,
    dir: Option<Arc<PathBuf>>,
}

/// Settings of the writer.
#[derive(Clone, Debug)]
pub struct LogSettings {
    pub dir: PathBuf,
    /// Rotate a file when it exceeds this size.
    pub rotate_bytes: u64,
    /// Records queued at most before dropping.
    pub queue: usize,
}

struct Writer {
    dir: PathBuf,
    rotate_bytes: u64,
    file: Option<(std::io::BufWriter<std::fs::File>, u64, String)>,
    seq: u64,
    clock: Arc<dyn crate::clock::Clock>,
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

impl Writer {
    fn write(&mut self, rec: &LogRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let tag = hour_tag(self.clock.now_ms());
        let rotate = match &self.file {
            None => true,
            Some((_, size, file_tag)) => *size >= self.rotate_bytes || *file_tag != tag,
        };
        if rotate {
            if let Some((mut f, _, _)) = self.file.take() {
                f.flush()?;
            }
            let path = loop {
                self.seq += 1;
                let p = self
                    .dir
                    .join(format!("decisions-{tag}-{:04}.jsonl", self.seq));
                if !p.exists() {
                    break p;
                }
            };
            let f = std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?;
            self.file = Some((std::io::BufWriter::new(f), 0, tag));
        }
        let (f, size, _) = self.file.as_mut().expect("opened above");
        f.write_all(&line)?;
        *size += line.len() as u64;
        Ok(())
    }

    fn flush(&mut self) {
        if let Some((f, _, _)) = self.file.as_mut() {
            if let Err(e) = f.flush() {
                tracing::error!(error = %e, "decision log flush failed");
            }
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

    /// Starts the writer thread.
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
        };
        std::thread::Builder::new()
            .name("nudge-log".into())
            .spawn(move || {
                while let Some(msg) = rx.blocking_recv() {
                    match msg {
                        Msg::Record(rec) => match w.write(&rec) {
                            Ok(()) => {
                                c.written.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                c.dropped.fetch_add(1, Ordering::Relaxed);
                                tracing::error!(error = %e, "decision log write failed");
                            }
                        },
                        Msg::Flush(ack) => {
                            w.flush();
                            let _ = ack.send(());
                        }
                    }
                    if rx.is_empty() {
                        w.flush();
                    }
                }
                w.flush();
                tracing::debug!("decision log writer stopped");
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
        let Some(tx) = &self.tx else { return };
        if tx.try_send(Msg::Record(Box::new(rec))).is_err() {
            let n = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "decision log queue full, records dropped");
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
}
