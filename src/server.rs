//! Wiring: builds the engine from settings and serves gRPC (Offers, health,
//! reflection) on a listener until the shutdown future resolves.

use crate::clock::Clock;
use crate::config::{LedgerBackend, SessionBackend, Settings, DEFAULT_MODEL};
use crate::engine::Engine;
use crate::ledger::{Ledger, MemoryLedger};
use crate::ledger_sqlite::{spawn_sweeper, SqliteLedger};
use crate::log_writer::{DecisionLog, LogSettings};
use crate::model::{Model, ModelError, ModelFile};
use crate::pb;
use crate::redis_backend::{RedisConn, RedisLedger, RedisSessionStore};
use crate::service::OffersService;
use crate::store::{MemorySessionStore, SessionStore};
use crate::voucher::VoucherKey;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// The default model, embedded at build time so `nudge serve` works from any
/// directory with zero set-up.
pub const EMBEDDED_DEFAULT_MODEL: &str = include_str!("../models/default.json");

/// Hard cap on a decoded gRPC message, above the validated limit so that a
/// too-large request usually gets a field-naming INVALID_ARGUMENT from
/// validation rather than a transport error.
const TRANSPORT_SIZE_FACTOR: usize = 4;

/// How long shutdown waits for in-flight calls and open connections.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Setup(String),
}

/// Loads the configured model; with no model configured, `models/default.json`
/// if present, else the embedded copy. Returns the model and where it came from.
pub fn load_model(settings: &Settings) -> Result<(Model, String), ModelError> {
    if let Some(path) = &settings.model {
        return Ok((Model::load(path)?, path.display().to_string()));
    }
    let default = std::path::Path::new(DEFAULT_MODEL);
    if default.exists() {
        return Ok((Model::load(default)?, DEFAULT_MODEL.to_owned()));
    }
    let file: ModelFile =
        serde_json::from_str(EMBEDDED_DEFAULT_MODEL).map_err(|source| ModelError::Parse {
            path: "<embedded>".into(),
            source,
        })?;
    Ok((file.compile()?, "<embedded default>".to_owned()))
}

/// File (under the data directory) holding the generated voucher key.
pub const VOUCHER_KEY_FILE: &str = "voucher.key";
/// File (under the data directory) of the SQLite ledger.
pub const LEDGER_FILE: &str = "ledger.sqlite3";
/// The pacing controllers' state across restarts (next to the ledger).
pub const PACING_FILE: &str = "pacing.json";

/// Where the pacing state is kept: with a durable ledger (SQLite, or Redis:
/// each replica paces its own share and keeps its own file). A memory
/// ledger forgets the day's spend on restart, and a controller restored
/// against a spend of zero would be steering the wrong day.
pub fn pacing_file(settings: &Settings) -> Option<std::path::PathBuf> {
    (settings.ledger_backend != LedgerBackend::Memory).then(|| settings.data_dir.join(PACING_FILE))
}

/// Restores the pacing state from `path` if it is there. Pacing steers
/// spend within the budget, it never decides whether money may be spent
/// (the ledger does), so an unreadable file is logged and ignored.
pub fn load_pacing(engine: &Engine, path: &std::path::Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the pacing state, pacing starts afresh");
            return;
        }
    };
    match serde_json::from_str::<crate::pacing::SavedPacing>(&text) {
        Ok(s) if s.format == crate::pacing::SAVED_FORMAT => {
            let n = engine.restore_pacing(&s);
            tracing::info!(path = %path.display(), restored = n, "pacing state restored");
        }
        Ok(s) => {
            tracing::warn!(path = %path.display(), format = %s.format, "unknown pacing state format, pacing starts afresh")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "bad pacing state, pacing starts afresh")
        }
    }
}

/// Writes the pacing state to `path` atomically (temporary file + rename;
/// no fsync: losing the last few seconds of controller state costs pacing
/// accuracy, never money).
pub fn save_pacing(
    saved: &crate::pacing::SavedPacing,
    path: &std::path::Path,
) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut bytes = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// How often the pacing controllers read the spend.
pub const PACING_TICK: std::time::Duration = std::time::Duration::from_secs(5);

/// The voucher secret: the configured one, else `env_secret` (the
/// `NUDGE_VOUCHER_SECRET` environment variable, read by the binary), else a
/// random key generated once into `<data_dir>/voucher.key` (mode 0600) so
/// that codes survive restarts with zero set-up.
pub fn voucher_key(
    settings: &Settings,
    env_secret: Option<&str>,
) -> Result<VoucherKey, ServerError> {
    if let Some(s) = &settings.voucher_secret {
        return Ok(VoucherKey::from_secret(&s.0));
    }
    let env_secret = env_secret.filter(|s| !s.is_empty());
    if env_secret.is_none() && settings.ledger_backend == LedgerBackend::Redis {
        // A key generated into one replica's data directory would make the
        // codes it mints unredeemable at every other replica.
        return Err(ServerError::Setup(
            "ledger.backend = \"redis\" needs one voucher secret shared by every replica: set voucher.secret or NUDGE_VOUCHER_SECRET".into(),
        ));
    }
    if let Some(s) = env_secret {
        if s.len() < crate::config::MIN_SECRET_BYTES {
            return Err(ServerError::Setup(format!(
                "NUDGE_VOUCHER_SECRET must be at least {} bytes",
                crate::config::MIN_SECRET_BYTES
            )));
        }
        return Ok(VoucherKey::from_secret(s));
    }
    let path = settings.data_dir.join(VOUCHER_KEY_FILE);
    let io = |e: std::io::Error| ServerError::Setup(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = decode_hex(text.trim()).ok_or_else(|| {
                ServerError::Setup(format!("{} is not 64 hex digits", path.display()))
            })?;
            Ok(VoucherKey::from_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&settings.data_dir).map_err(io)?;
            let key = VoucherKey::random();
            let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
            let tmp = path.with_extension("key.tmp");
            {
                use std::io::Write;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(&tmp).map_err(io)?;
                f.write_all(hex.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            std::fs::rename(&tmp, &path).map_err(io)?;
            tracing::info!(path = %path.display(), "generated a voucher key");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Builds the engine with the configured backends: the ledger (SQLite,
/// Redis or memory), the session store (memory or Redis), the decision log.
/// Nothing here dials Redis (see [`RedisConn::new`]).
pub fn build_engine(
    settings: &Settings,
    model: Model,
    clock: Arc<dyn Clock>,
    key: VoucherKey,
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
            SqliteLedger::open(
                &settings.data_dir.join(LEDGER_FILE),
                settings.budgets.clone(),
                key.clone(),
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
    let sessions: Arc<dyn SessionStore> = match settings.session_backend {
        SessionBackend::Memory => Arc::new(MemorySessionStore::new(
            settings.idle_ttl,
            settings.max_sessions,
        )),
        SessionBackend::Redis => Arc::new(RedisSessionStore::new(redis_conn()?, settings.idle_ttl)),
    };
    if settings.ledger_backend == LedgerBackend::Redis {
        if let (Ok(rt), Ok(conn)) = (tokio::runtime::Handle::try_current(), redis_conn()) {
            rt.spawn(async move { conn.check_durability().await });
        }
    }
    let log = match settings.log {
        Some(cfg) => DecisionLog::start(
            &LogSettings {
                dir: settings.data_dir.join("log"),
                rotate_bytes: cfg.rotate_bytes,
                queue: cfg.queue,
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

/// Background work of a running service: the expiry sweeper and the pacing
/// loop (which also saves the pacing state to `pacing_file`, if any, after
/// every tick and when it stops). Dropping it does not stop them; call
/// [`Background::stop`].
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    pub fn spawn(
        engine: Arc<Engine>,
        sweep_interval: std::time::Duration,
        pacing_file: Option<std::path::PathBuf>,
    ) -> Background {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let sweeper = spawn_sweeper(
            engine.ledger.clone(),
            engine.clock.clone(),
            sweep_interval,
            rx.clone(),
        );
        let mut rx_pacing = rx;
        let e = engine.clone();
        let pacing = tokio::spawn(async move {
            let save = |e: &Engine| {
                let path = pacing_file.clone()?;
                let saved = e.save_pacing();
                Some(tokio::task::spawn_blocking(move || {
                    if let Err(err) = save_pacing(&saved, &path) {
                        tracing::warn!(path = %path.display(), error = %err, "cannot save the pacing state");
                    }
                }))
            };
            let mut tick = tokio::time::interval(PACING_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        e.update_pacing().await;
                        if let Some(h) = save(&e) {
                            let _ = h.await;
                        }
                    }
                    changed = rx_pacing.changed() => {
                        if changed.is_err() || *rx_pacing.borrow() {
                            break;
                        }
                    }
                }
            }
            if let Some(h) = save(&e) {
                let _ = h.await;
            }
            tracing::debug!("pacing loop stopped");
        });
        Background {
            stop,
            tasks: vec![sweeper, pacing],
        }
    }

    /// Stops the tasks and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Serves until `shutdown` resolves, then drains in-flight calls.
pub async fn run(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let max_message = engine.limits.max_request_bytes * TRANSPORT_SIZE_FACTOR;
    let offers = pb::offers_server::OffersServer::new(OffersService::new(engine))
        .max_decoding_message_size(max_message);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::offers_server::OffersServer<OffersService>>()
        .await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;

    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving grpc");
    }
    // Graceful: on shutdown stop accepting, let in-flight calls finish, but
    // never wait more than DRAIN_GRACE for clients that keep connections open.
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    let serve = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(offers)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal);
    let deadline = async move {
        if fired_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(DRAIN_GRACE).await;
    };
    tokio::select! {
        r = serve => r?,
        _ = deadline => tracing::warn!(grace_ms = DRAIN_GRACE.as_millis() as u64, "drain deadline passed, closing remaining connections"),
    }
    tracing::info!("server stopped");
    Ok(())
}
