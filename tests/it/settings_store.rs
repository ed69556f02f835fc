//! One conformance suite for every campaign `SettingsStore`: memory,
//! SQLite and Redis.

use nudge::campaigns::store::{
    AuditEntry, Commit, CommitError, MemorySettings, SettingsStore, SqliteSettings, Stored,
};
use nudge::campaigns::{Base, CampaignSettings, Overrides};
use nudge::ledger::CampaignBudget;
use std::sync::Arc;

fn base() -> Base {
    let s = nudge::config::RawConfig::default().validate().unwrap();
    Base {
        policy: s.policy.clone(),
        experiment: s.experiment.clone(),
        learning_share: 0.1,
        pacing: s.pacing.clone(),
        timezone: chrono_tz::UTC,
        default_campaign: "default".into(),
    }
}

fn settings(id: &str, cap: i64, revision: u64) -> CampaignSettings {
    let mut s = CampaignSettings::seed(
        id,
        &CampaignBudget::with_learning_share(cap, None, 0.1),
        &base(),
        &Overrides::default(),
    );
    s.revision = revision;
    s
}

fn commit(s: CampaignSettings, expected: Option<u64>, reason: &str) -> Commit {
    Commit {
        expected,
        audit: AuditEntry {
            seq: 0,
            at_ms: 1_000 + s.revision as i64,
            actor: "ops".into(),
            campaign: s.id.clone(),
            action: if expected.is_none() { "create" } else { "update" }.into(),
            before: None,
            after: s.clone(),
            changes: String::new(),
            reason: reason.into(),
        },
        stored: Stored {
            settings: s,
            seed: None,
        },
    }
}

/// The suite: `reopen` gives a new handle on the same stored state.
async fn conformance(store: Arc<dyn SettingsStore>, reopen: impl Fn() -> Arc<dyn SettingsStore>) {
    assert_eq!(store.load().await.unwrap(), (vec![], 0));

    let a = store.commit(commit(settings("a", 100, 1), None, "new a")).await.unwrap();
    assert_eq!(a.seq, 1);
    assert!(matches!(
        store.commit(commit(settings("a", 200, 1), None, "twice")).await,
        Err(CommitError::Stale)
    ));
    store.commit(commit(settings("b", 300, 1), None, "new b")).await.unwrap();
    // An update on the revision in force, then one on a stale revision.
    let up = store
        .commit(commit(settings("a", 150, 2), Some(1), "raise a"))
        .await
        .unwrap();
    assert_eq!(up.seq, 3);
    assert!(matches!(
        store.commit(commit(settings("a", 10, 2), Some(1), "stale")).await,
        Err(CommitError::Stale)
    ));
    assert!(matches!(
        store.commit(commit(settings("zz", 10, 2), Some(1), "missing")).await,
        Err(CommitError::Stale)
    ));
    assert_eq!(store.version().await.unwrap(), 3);

    // Newest first, by campaign, paged.
    let reasons = |v: Vec<AuditEntry>| v.into_iter().map(|e| e.reason).collect::<Vec<_>>();
    assert_eq!(
        reasons(store.audit(None, 10, None).await.unwrap()),
        ["raise a", "new b", "new a"]
    );
    assert_eq!(
        reasons(store.audit(Some("a"), 10, None).await.unwrap()),
        ["raise a", "new a"]
    );
    assert_eq!(reasons(store.audit(None, 1, Some(3)).await.unwrap()), ["new b"]);
    let newest = &store.audit(None, 1, None).await.unwrap()[0];
    assert_eq!((newest.seq, newest.actor.as_str()), (3, "ops"));

    // Another handle (a restart, another replica) sees the same.
    let again = reopen();
    let (mut all, version) = again.load().await.unwrap();
    all.sort_by(|x, y| x.settings.id.cmp(&y.settings.id));
    assert_eq!(version, 3);
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].settings.daily_cap_cents, all[0].settings.revision),
        (150, 2)
    );
    assert_eq!(all[1].settings.daily_cap_cents, 300);
}

#[tokio::test]
async fn memory_settings_conform() {
    let store: Arc<dyn SettingsStore> = Arc::new(MemorySettings::default());
    let same = store.clone();
    conformance(store, move || same.clone()).await;
}

#[tokio::test]
async fn sqlite_settings_conform_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("campaigns.sqlite3");
    let store: Arc<dyn SettingsStore> = Arc::new(SqliteSettings::open(&path).unwrap());
    let reopen = move || -> Arc<dyn SettingsStore> { Arc::new(SqliteSettings::open(&path).unwrap()) };
    conformance(store, reopen).await;
}

#[tokio::test]
async fn redis_settings_conform_and_are_shared() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    let store: Arc<dyn SettingsStore> =
        Arc::new(nudge::redis::RedisSettingsStore::new(redis.conn("settings")));
    let conn = redis.conn("settings");
    let reopen =
        move || -> Arc<dyn SettingsStore> { Arc::new(nudge::redis::RedisSettingsStore::new(conn.clone())) };
    conformance(store, reopen).await;
}

/// Two writers racing on one campaign: exactly one commit per revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_on_one_revision_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("campaigns.sqlite3");
    let store: Arc<dyn SettingsStore> = Arc::new(SqliteSettings::open(&path).unwrap());
    store.commit(commit(settings("a", 100, 1), None, "new")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit(commit(settings("a", 100 + i, 2), Some(1), "race"))
                .await
                .is_ok()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    assert_eq!(store.version().await.unwrap(), 2);
}
