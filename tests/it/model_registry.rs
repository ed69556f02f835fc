//! One conformance suite for every `ModelRegistry`: memory, SQLite and
//! Redis.

use nudge::models::sqlite::SqliteRegistry;
use nudge::models::{MemoryRegistry, ModelRegistry, Publish, RegistryError, Rollback};
use std::sync::Arc;

fn publish(body: &str, at_ms: i64) -> Publish {
    Publish {
        body: body.into(),
        version: format!("v-{body}"),
        at_ms,
        by: "ops".into(),
        reason: format!("ship {body}"),
    }
}

fn rollback(expected: u64) -> Rollback {
    Rollback {
        expected,
        at_ms: 9,
        by: "ops".into(),
        reason: "looks wrong".into(),
    }
}

/// The suite: `reopen` gives a new handle on the same stored state.
async fn conformance(reopen: impl Fn() -> Arc<dyn ModelRegistry>) {
    let r = reopen();
    assert_eq!(r.live().await.unwrap(), None);
    assert!(r.history().await.unwrap().is_empty());
    assert_eq!(r.rollback(rollback(1)).await, Err(RegistryError::Empty));

    let a = r.publish(publish("a", 1), 3).await.unwrap();
    assert_eq!((a.seq, a.version.as_str()), (1, "v-a"));
    assert_eq!(a.sha256, nudge::models::sha256_hex(b"a"));
    // The same bytes again change nothing.
    assert_eq!(r.publish(publish("a", 2), 3).await.unwrap(), a);
    assert_eq!(
        r.rollback(rollback(1)).await,
        Err(RegistryError::NoEarlier(0)),
        "nothing before the first model"
    );

    let b = r.publish(publish("b", 3), 3).await.unwrap();
    assert_eq!(b.seq, 2);
    let r = reopen();
    assert_eq!(r.live().await.unwrap(), Some(b.clone()));
    assert_eq!(r.body(2).await.unwrap().as_deref(), Some("b"));
    assert_eq!(r.body(99).await.unwrap(), None);

    // A rollback made on a stale view is refused.
    assert_eq!(
        r.rollback(rollback(1)).await,
        Err(RegistryError::Conflict(2))
    );
    let live = r.rollback(rollback(2)).await.unwrap();
    assert_eq!(live, a);
    let r = reopen();
    assert_eq!(r.live().await.unwrap(), Some(a.clone()));
    let h = r.history().await.unwrap();
    assert_eq!(h.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 1]);
    let back = h[0].rolled_back.as_ref().expect("b is marked rolled back");
    assert_eq!(
        (back.by.as_str(), back.reason.as_str()),
        ("ops", "looks wrong")
    );

    // Publishing the rolled-back bytes again is a new entry.
    let b2 = r.publish(publish("b", 4), 3).await.unwrap();
    assert_eq!(b2.seq, 3);
    // Three in service kept: publishing d and e drops a (and the
    // rolled-back b older than the oldest kept).
    r.publish(publish("d", 5), 3).await.unwrap();
    let e = r.publish(publish("e", 6), 3).await.unwrap();
    let h = reopen().history().await.unwrap();
    assert_eq!(h.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![5, 4, 3]);
    assert_eq!(r.body(1).await.unwrap(), None, "dropped with its entry");

    // Rolling back walks back through the kept ones, then stops.
    assert_eq!(r.rollback(rollback(5)).await.unwrap().seq, 4);
    assert_eq!(r.rollback(rollback(4)).await.unwrap().seq, 3);
    assert_eq!(
        r.rollback(rollback(3)).await,
        Err(RegistryError::NoEarlier(2))
    );
    assert_eq!(r.live().await.unwrap().map(|l| l.seq), Some(3));
    assert_ne!(e.seq, 3);

    // Concurrent publishes each get their own seq; one of them is live.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let r = reopen();
        tasks.push(tokio::spawn(async move {
            r.publish(publish(&format!("c{i}"), 10 + i), 20)
                .await
                .unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().seq);
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 8, "distinct seqs: {seqs:?}");
    let live = reopen().live().await.unwrap().unwrap();
    assert_eq!(live.seq, *seqs.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_model_registry_conforms() {
    let r: Arc<dyn ModelRegistry> = Arc::new(MemoryRegistry::default());
    conformance(move || r.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_model_registry_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("models.sqlite3");
    conformance(move || Arc::new(SqliteRegistry::open(&path).unwrap()) as Arc<dyn ModelRegistry>)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_model_registry_conforms() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    conformance(move || {
        Arc::new(nudge::redis::RedisModelRegistry::new(redis.conn("models")))
            as Arc<dyn ModelRegistry>
    })
    .await;
}
