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
        offered: Default::default(),
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

/// Caps set in a batch bind the requests after it in the same batch; they
/// are answered at once and stay in force when the batch's commit fails
/// (nothing of them is written), while the batch's offers and voids are
/// undone, even back above the new cap.
#[test]
fn caps_set_in_a_failing_batch_stay_and_its_offers_are_undone() {
    let dir = tempfile::tempdir().unwrap();
    let disk_full = DiskFull::default();
    let mut w = Writer {
        conn: open_connection(&dir.path().join("ledger.sqlite3")).unwrap(),
        core: LedgerCore::new(Budgets::single(1_000), VoucherKey::random()),
        offered: Default::default(),
        health: Health::new(),
        disk_full: disk_full.clone(),
    };
    let set = |daily: i64, revision: u64| {
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::SetBudget {
            campaign: crate::ledger::DEFAULT_CAMPAIGN.into(),
            budget: crate::ledger::CampaignBudget {
                daily_cap_cents: daily,
                total_cap_cents: None,
                learning_cap_cents: 0,
            },
            revision,
            reply,
        };
        (cmd, rx)
    };
    let ((a, mut a_rx), (b, mut b_rx)) = (reserve("a".into()), reserve("b".into()));
    w.process(&mut vec![a, b]);
    assert!(matches!(
        a_rx.try_recv(),
        Ok(Ok(ReserveOutcome::Reserved(_)))
    ));
    assert!(matches!(
        b_rx.try_recv(),
        Ok(Ok(ReserveOutcome::Reserved(_)))
    ));

    // One batch: both offers expire, the cap drops to 100, one offer of 100
    // fits under it, a second does not; then the commit fails.
    disk_full.set(true);
    let (void_reply, mut void_rx) = oneshot::channel();
    let (lower, mut lower_rx) = set(100, 1);
    let ((c, mut c_rx), (d, mut d_rx)) = (reserve("c".into()), reserve("d".into()));
    let later = |cmd| match cmd {
        Cmd::Reserve {
            campaign,
            session_id,
            candidates,
            expires_at_ms,
            learning,
            reply,
            ..
        } => Cmd::Reserve {
            campaign,
            session_id,
            candidates,
            now_ms: NOW + 60_000,
            expires_at_ms: expires_at_ms + 60_000,
            learning,
            reply,
        },
        other => other,
    };
    w.process(&mut vec![
        Cmd::VoidExpired {
            now_ms: NOW + 60_000,
            reply: void_reply,
        },
        lower,
        later(c),
        later(d),
    ]);
    assert!(matches!(lower_rx.try_recv(), Ok(Ok(true))));
    assert!(matches!(void_rx.try_recv(), Ok(Err(_))));
    assert!(
        matches!(c_rx.try_recv(), Ok(Err(_))),
        "c fitted, then undone"
    );
    assert!(matches!(d_rx.try_recv(), Ok(Err(_))));
    assert!(agrees(&w));
    assert!(
        w.core.invariant_holds(),
        "the undone voids are allowed back"
    );
    let snap = w
        .core
        .snapshot(crate::ledger::DEFAULT_CAMPAIGN, NOW)
        .unwrap();
    assert_eq!((snap.cap_cents, snap.reserved_cents), (100, 200));

    // The storage recovers: the lowered cap still refuses.
    disk_full.set(false);
    std::thread::sleep(BACKOFF_MAX);
    let (e, mut e_rx) = reserve("e".into());
    w.process(&mut vec![e]);
    assert!(matches!(
        e_rx.try_recv(),
        Ok(Ok(ReserveOutcome::Exhausted { remaining_cents: 0 }))
    ));
    // In one batch: a stale change is ignored, a newer one binds the
    // reservations after it.
    let (stale, mut stale_rx) = set(1_000, 0);
    let (raise, mut raise_rx) = set(300, 2);
    let ((f, mut f_rx), (g, mut g_rx)) = (reserve("f".into()), reserve("g".into()));
    w.process(&mut vec![stale, raise, f, g]);
    assert!(matches!(stale_rx.try_recv(), Ok(Ok(false))));
    assert!(matches!(raise_rx.try_recv(), Ok(Ok(true))));
    assert!(matches!(
        f_rx.try_recv(),
        Ok(Ok(ReserveOutcome::Reserved(_)))
    ));
    assert!(matches!(
        g_rx.try_recv(),
        Ok(Ok(ReserveOutcome::Exhausted { remaining_cents: 0 }))
    ));
    assert!(agrees(&w));
    assert!(w.core.invariant_holds());
}
