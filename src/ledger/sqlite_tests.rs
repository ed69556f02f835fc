//! The SQLite ledger's writer against real storage faults.

use super::*;

const NOW: i64 = 1_795_341_600_000;

fn reserve(session: String) -> (Cmd, oneshot::Receiver<Result<ReserveOutcome, LedgerError>>) {
    let (reply, rx) = oneshot::channel();
    let cmd = Cmd::Reserve {
        campaign: crate::ledger::DEFAULT_CAMPAIGN.into(),
        session_id: session,
        candidates: vec![100],
        now_ms: NOW,
        expires_at_ms: NOW + 60_000,
        learning: false,
        reply,
    };
    (cmd, rx)
}

/// A batch of reservations with long session ids (pages fill quickly);
/// how many were answered with an offer.
fn batch(w: &mut Writer, tag: &str) -> usize {
    let (mut cmds, mut rxs) = (Vec::new(), Vec::new());
    for i in 0..MAX_BATCH {
        let (c, rx) = reserve(format!("{tag}-{i}-{}", "x".repeat(200)));
        cmds.push(c);
        rxs.push(rx);
    }
    w.process(&mut cmds);
    rxs.into_iter()
        .filter_map(|mut rx| rx.try_recv().ok())
        .filter(|r| matches!(r, Ok(ReserveOutcome::Reserved(_))))
        .count()
}

/// Whether the writer's memory holds exactly the rows of the file.
fn agrees(w: &Writer) -> bool {
    let mut disk = load_rows(&w.conn).unwrap();
    disk.sort_by(|a, b| (a.issued_ms, &a.code).cmp(&(b.issued_ms, &b.code)));
    w.core.rows() == disk
}

#[test]
fn a_real_sqlite_full_undoes_the_batch_and_the_connection_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let conn = open_connection(&path).unwrap();
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    // The database may grow by a few batches only: then a real
    // SQLITE_FULL ("database or disk is full") from SQLite itself.
    conn.pragma_update(None, "max_page_count", pages + 64)
        .unwrap();
    let mut w = Writer {
        conn,
        core: LedgerCore::new(Budgets::single(1 << 40), VoucherKey::random()),
        health: Health::new(),
        disk_full: DiskFull::default(),
    };
    let (mut failed, mut committed) = (false, 0);
    for b in 0..50 {
        let offered = batch(&mut w, &format!("b{b}"));
        assert!(agrees(&w), "memory equals the file after batch {b}");
        if offered == 0 {
            failed = true;
            break;
        }
        assert_eq!(
            offered, MAX_BATCH,
            "a batch is committed whole or not at all"
        );
        committed += 1;
    }
    assert!(
        failed && committed > 0,
        "the database filled up after {committed}"
    );
    assert!(w.health.down_since.is_some());
    // Space returns: after the backoff the next batch is committed on
    // the same connection.
    w.conn
        .pragma_update(None, "max_page_count", 1_000_000)
        .unwrap();
    std::thread::sleep(BACKOFF_MAX);
    assert_eq!(batch(&mut w, "after"), MAX_BATCH);
    assert!(w.health.down_since.is_none());
    assert!(agrees(&w));
    assert_eq!(w.core.rows().len(), (committed + 1) * MAX_BATCH);
    assert!(w.core.invariant_holds());
}
