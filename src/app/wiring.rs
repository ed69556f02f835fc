//! Builds the engine with the configured backends.

use crate::app::pacing_state::{load_pacing, pacing_file};
use crate::app::ServerError;
use crate::campaigns::store::{MemorySettings, SettingsStore, SqliteSettings};
use crate::clock::Clock;
use crate::config::{LedgerBackend, SessionBackend, Settings};
use crate::decision_log::writer::{DecisionLog, LogSettings};
use crate::domain::model::Model;
use crate::domain::voucher::VoucherKey;
use crate::engine::Engine;
use crate::files::DiskFull;
use crate::ledger::sqlite::SqliteLedger;
use crate::ledger::{Ledger, MemoryLedger};
use crate::models::sqlite::SqliteRegistry;
use crate::models::{MemoryRegistry, ModelRegistry};
use crate::redis::{
    check_instances, RedisConn, RedisLedger, RedisModelRegistry, RedisSessionStore,
    RedisSettingsStore,
};
use crate::store::{MemorySessionStore, SessionStore};
use std::sync::Arc;

/// File (under the data directory) of the SQLite ledger.
pub const LEDGER_FILE: &str = "ledger.sqlite3";

/// Builds the engine with the configured backends: the ledger (SQLite,
/// Redis or memory), the session store (memory or Redis), the decision log.
/// Nothing here dials Redis (see [`RedisConn::new`]).
pub fn build_engine(
    settings: &Settings,
    model: Model,
    clock: Arc<dyn Clock>,
    key: VoucherKey,
) -> Result<Engine, ServerError> {
    build_engine_with(settings, model, clock, key, DiskFull::default())
}

/// [`build_engine`] with a [`DiskFull`] switch on the data directory's
/// writers (the SQLite ledger and the decision log), for fault drills and
/// tests.
pub fn build_engine_with(
    settings: &Settings,
    model: Model,
    clock: Arc<dyn Clock>,
    key: VoucherKey,
    disk_full: DiskFull,
) -> Result<Engine, ServerError> {
    let redis = settings
        .redis
        .as_ref()
        .map(RedisConn::new)
        .transpose()
        .map_err(ServerError::Setup)?;
    let redis_conn = || {
        redis.clone().ok_or_else(|| {
            ServerError::Setup("a redis backend is configured without [redis] settings".into())
        })
    };
    let ledger: Arc<dyn Ledger> = match settings.ledger_backend {
        LedgerBackend::Sqlite => Arc::new(
            SqliteLedger::open_with(
                &settings.data_dir.join(LEDGER_FILE),
                settings.budgets.clone(),
                key.clone(),
                disk_full.clone(),
            )
            .map_err(|e| ServerError::Setup(e.to_string()))?,
        ),
        LedgerBackend::Redis => Arc::new(RedisLedger::new(
            redis_conn()?,
            settings.budgets.clone(),
            key.clone(),
        )),
        LedgerBackend::Memory => Arc::new(MemoryLedger::new(settings.budgets.clone(), key.clone())),
    };
    // Sessions on the ledger's URL share its connection; on their own URL
    // (`sessions.redis_url`) they get their own.
    let same_url = match (&settings.session_redis, &settings.redis) {
        (Some(s), Some(r)) => s.url == r.url,
        _ => false,
    };
    let session_conn = match &settings.session_redis {
        Some(_) if same_url => Some(redis_conn()?),
        Some(s) => Some(RedisConn::new(s).map_err(ServerError::Setup)?),
        None => None,
    };
    let sessions: Arc<dyn SessionStore> = match (settings.session_backend, &session_conn) {
        (SessionBackend::Redis, Some(conn)) => {
            Arc::new(RedisSessionStore::new(conn.clone(), settings.idle_ttl))
        }
        (SessionBackend::Redis, None) => {
            return Err(ServerError::Setup(
                "the redis session store is configured without [redis] settings".into(),
            ))
        }
        (SessionBackend::Memory, _) => Arc::new(MemorySessionStore::new(
            settings.idle_ttl,
            settings.max_sessions,
        )),
    };
    if settings.ledger_backend == LedgerBackend::Redis {
        if let (Ok(rt), Ok(conn)) = (tokio::runtime::Handle::try_current(), redis_conn()) {
            rt.spawn(async move {
                check_instances(&conn, session_conn.as_ref(), same_url).await;
            });
        }
    }
    let log = match settings.log {
        Some(cfg) => DecisionLog::start(
            &LogSettings {
                dir: settings.data_dir.join("log"),
                rotate_bytes: cfg.rotate_bytes,
                queue: cfg.queue,
                retention: Some(cfg.retention),
                disk_full,
            },
            clock.clone(),
        )
        .map_err(|e| ServerError::Setup(format!("decision log: {e}")))?,
        None => DecisionLog::disabled(),
    };
    let engine = Engine::new(settings, Arc::new(model), sessions, ledger, clock, key, log);
    if let Some(path) = pacing_file(settings) {
        load_pacing(&engine, &path);
    }
    Ok(engine)
}

/// File (under the data directory) of the campaign settings and their
/// audit trail, beside the SQLite ledger.
pub const CAMPAIGNS_FILE: &str = "campaigns.sqlite3";

/// The campaign settings store that goes with the configured ledger:
/// SQLite beside the SQLite ledger, Redis with the Redis ledger (shared by
/// every replica), memory with the memory ledger.
pub fn settings_store(settings: &Settings) -> Result<Arc<dyn SettingsStore>, ServerError> {
    Ok(match settings.ledger_backend {
        LedgerBackend::Sqlite => Arc::new(
            SqliteSettings::open(&settings.data_dir.join(CAMPAIGNS_FILE))
                .map_err(|e| ServerError::Setup(e.to_string()))?,
        ),
        LedgerBackend::Redis => {
            let redis = settings.redis.as_ref().ok_or_else(|| {
                ServerError::Setup("a redis backend is configured without [redis] settings".into())
            })?;
            Arc::new(RedisSettingsStore::new(
                RedisConn::new(redis).map_err(ServerError::Setup)?,
            ))
        }
        LedgerBackend::Memory => Arc::new(MemorySettings::default()),
    })
}

/// File (under the data directory) of the model history, beside the
/// SQLite ledger.
pub const MODELS_FILE: &str = "models.sqlite3";

/// The model history that goes with the configured ledger: SQLite beside
/// the SQLite ledger, Redis with the Redis ledger (shared by every
/// replica), memory with the memory ledger.
pub fn model_registry(settings: &Settings) -> Result<Arc<dyn ModelRegistry>, ServerError> {
    Ok(match settings.ledger_backend {
        LedgerBackend::Sqlite => {
            std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
                ServerError::Setup(format!("data_dir {}: {e}", settings.data_dir.display()))
            })?;
            Arc::new(
                SqliteRegistry::open(&settings.data_dir.join(MODELS_FILE))
                    .map_err(|e| ServerError::Setup(e.to_string()))?,
            )
        }
        LedgerBackend::Redis => {
            let redis = settings.redis.as_ref().ok_or_else(|| {
                ServerError::Setup("a redis backend is configured without [redis] settings".into())
            })?;
            Arc::new(RedisModelRegistry::new(
                RedisConn::new(redis).map_err(ServerError::Setup)?,
            ))
        }
        LedgerBackend::Memory => Arc::new(MemoryRegistry::default()),
    })
}

/// An engine with in-memory state only (no files): tests, benches, demos.
pub fn memory_engine(settings: &Settings, model: Model, clock: Arc<dyn Clock>) -> Engine {
    Engine::new(
        settings,
        Arc::new(model),
        Arc::new(MemorySessionStore::new(
            settings.idle_ttl,
            settings.max_sessions,
        )),
        Arc::new(MemoryLedger::new(
            settings.budgets.clone(),
            VoucherKey::random(),
        )),
        clock,
        VoucherKey::random(),
        DecisionLog::disabled(),
    )
}
