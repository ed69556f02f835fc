//! `nudge`: the service binary. Parses flags, reads the config file, and
//! hands a listener and a shutdown signal to `nudge::app::run`.

use clap::{Parser, Subcommand};
use nudge::app;
use nudge::clock::SystemClock;
use nudge::config::RawConfig;
use nudge::sim::synth::ResponseWorld;
use std::path::PathBuf;
use std::sync::Arc;

/// The allocator. A Decide allocates and frees many small buffers (HTTP/2
/// frames, the protobuf message, the session, the log record) on the
/// runtime's threads, and the log and ledger threads free what the runtime
/// allocated; under load glibc's malloc spent about a fifth of the
/// service's time on that, much of it in lock contention between threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "nudge",
    version,
    about = "Per-session voucher decisions over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (the default when no command is given).
    Serve(ServeArgs),
    /// Validate a config file and the model it names, print the settings, exit.
    CheckConfig(ServeArgs),
    /// Print the incremental ROI report from the data directory.
    Report(ReportArgs),
    /// The model history: list it, publish a model to every replica, roll
    /// back to the previous model, or pull the live one.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Compare policies (none, blanket, heat-tier, nudge, oracle) on the same
    /// generated visitors through the real decision code, on a virtual clock.
    Simulate(SimulateCli),
}

#[derive(clap::Args)]
struct SimulateCli {
    /// Generator seed (same seed, same visitors, same report).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The generator's response world: how strongly vouchers work and how
    /// much of price sensitivity the page signals show (see README
    /// "Simulated worlds").
    #[arg(long, value_enum, default_value_t = ResponseWorld::Calibrated)]
    world: ResponseWorld,
    /// Arrival rate of generated sessions.
    #[arg(long, default_value_t = 2000.0)]
    sessions_per_hour: f64,
    /// Simulated hours (from local midnight), at most one week.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    /// Daily budgets to sweep, EUR (default 500,1000,5000); with --days,
    /// the one daily budget (default 1000).
    #[arg(long, value_delimiter = ',')]
    budgets: Option<Vec<i64>>,
    /// Run the closed loop for this many days: nudge retrains each night on
    /// its own decision logs with `nudge-train retrain` (build it with
    /// `cargo build --release --workspace`).
    #[arg(long)]
    days: Option<u32>,
    /// Write the SVG chart to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Write the HTML page to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// With --days: the folder for the decision logs, models and report
    /// (default: <out>/loop).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// With --days: the trainer's configuration (nudge-train retrain --config).
    #[arg(long)]
    train_config: Option<PathBuf>,
    /// TOML config (policy, experiment, pacing, time zone, model); its caps
    /// are replaced by the sweep.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model file, overriding the config.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Directory for simulate.{json,txt,svg,html}.
    #[arg(long, default_value = "simulation")]
    out: PathBuf,
    /// Write no files.
    #[arg(long)]
    no_out: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Do not also run nudge without its holdout.
    #[arg(long)]
    no_holdout_variant: bool,
    /// Do not also run nudge offering only at exit intent.
    #[arg(long)]
    no_exit_intent_variant: bool,
    /// Face value of the blanket policy's voucher, cents.
    #[arg(long, default_value_t = 1000)]
    blanket_voucher_cents: i64,
    /// Also write the nudge run's decision log (first budget) here, in the
    /// service's format, for nudge-train.
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// List the kept models, newest first (which is live, which rolled back).
    List(ModelArgs),
    /// Validate a model file and put it in service on every replica (they
    /// poll the history every second).
    Publish {
        #[command(flatten)]
        args: ModelArgs,
        /// The model file (for example `nudge-train retrain --out`).
        file: PathBuf,
        /// Why, for the history.
        #[arg(long, default_value = "published from the command line")]
        reason: String,
        /// Publish even when the model was trained from another model than
        /// the live one.
        #[arg(long)]
        force: bool,
    },
    /// Take the live model out of service: the previous one is served again.
    Rollback {
        #[command(flatten)]
        args: ModelArgs,
        /// Why, for the history.
        #[arg(long, default_value = "rolled back from the command line")]
        reason: String,
    },
    /// Write the live model's file (for `nudge-train retrain --current`).
    Pull {
        #[command(flatten)]
        args: ModelArgs,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ModelArgs {
    /// TOML config file: the same as the service's (its ledger backend
    /// names where the history is kept).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory, overriding the config (default `data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// TOML config file (for the data directory, campaigns and margin).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory, overriding the config (default `data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Only decisions at or after this time: RFC 3339 (2026-11-22T00:00:00Z)
    /// or milliseconds since the epoch.
    #[arg(long)]
    since: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Decision log directory, overriding `<data_dir>/log`. With several
    /// replicas, a directory holding a copy of each replica's `log/` in its
    /// own folder: every replica's decisions join the shared outcomes.
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// TOML config file; every field is optional (see README "Config").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, overriding the config (default 127.0.0.1:50051).
    #[arg(long)]
    listen: Option<String>,
    /// Admin HTTP address (metrics, health), overriding the config (default
    /// 127.0.0.1:9464; "" turns it off).
    #[arg(long)]
    admin_listen: Option<String>,
    /// Model file, overriding the config (default models/default.json).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Data directory, overriding the config (default `data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn settings(args: &ServeArgs) -> Result<nudge::config::Settings, Box<dyn std::error::Error>> {
    let mut raw = RawConfig::load(args.config.as_deref())?;
    if let Some(l) = &args.listen {
        raw.listen = Some(l.clone());
    }
    if let Some(a) = &args.admin_listen {
        raw.admin_listen = Some(a.clone());
    }
    if let Some(m) = &args.model {
        raw.model = Some(m.clone());
    }
    if let Some(d) = &args.data_dir {
        raw.data_dir = Some(d.clone());
    }
    raw.admin.env_tokens = std::env::var(nudge::auth::ENV_TOKENS)
        .ok()
        .map(nudge::config::Secret);
    Ok(raw.validate()?)
}

/// Resolves on SIGINT or SIGTERM: both mean "drain and stop".
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for sigterm");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!(signal = "sigint", "shutting down"),
        _ = term => tracing::info!(signal = "sigterm", "shutting down"),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(false, ServeArgs::default()).await,
        Some(Command::Serve(a)) => serve(false, a).await,
        Some(Command::CheckConfig(a)) => serve(true, a).await,
        Some(Command::Report(a)) => report(a).await,
        Some(Command::Model(c)) => model(c).await,
        Some(Command::Simulate(a)) => simulate(a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nudge: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(check_only: bool, args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let settings = settings(&args)?;
    let reload_args = ServeArgs {
        config: args.config.clone(),
        listen: args.listen.clone(),
        admin_listen: args.admin_listen.clone(),
        model: args.model.clone(),
        data_dir: args.data_dir.clone(),
    };
    let (model, source, model_text) = app::load_model_text(&settings)?;
    tracing::info!(model = %source, version = model.version(), "model loaded");
    let learned = model.learns_any(&settings.policy.tiers);
    tracing::info!(
        learned_response = learned,
        offer_on_priors = settings.policy.offer_on_priors,
        explore_share = settings.experiment.share(learned),
        "voucher response"
    );
    tracing::info!(
        ledger = ?settings.ledger_backend,
        sessions = ?settings.session_backend,
        redis = %settings
            .redis
            .as_ref()
            .map_or_else(|| "-".to_owned(), |r| nudge::redis::redact_url(&r.url)),
        sessions_redis = %settings
            .session_redis
            .as_ref()
            .map_or_else(|| "-".to_owned(), |r| nudge::redis::redact_url(&r.url)),
        data_dir = %settings.data_dir.display(),
        "state backends"
    );
    // The certificate and key are read and checked before anything binds,
    // by check-config too.
    let tls = settings
        .tls
        .as_ref()
        .map(app::tls::ServerTls::load)
        .transpose()?;
    if check_only {
        // The settings in force as a config file (secrets left out); the
        // lines above the settings are TOML comments, so the whole output
        // can be saved and used as the config file.
        println!(
            "# config ok; model ok: {source} ({})\n{}",
            model.version(),
            settings.to_toml()
        );
        return Ok(());
    }
    // The environment is read here, once, and passed in.
    let env_secret = std::env::var("NUDGE_VOUCHER_SECRET").ok();
    let key = app::voucher_key(&settings, env_secret.as_deref())?;
    nudge::auth::warn_if_open(settings.listen, &settings.admin_tokens);
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    // The recorder is installed before the engine is built, so that nothing
    // it counts is missed; with no admin server nothing is recorded.
    let admin = match settings.admin_listen {
        None => None,
        Some(addr) => {
            let admin_listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (admin_listen): {e}"))?;
            let handle = nudge::admin::install_recorder()?;
            nudge::admin::record_static(model.version());
            if let Ok(addr) = admin_listener.local_addr() {
                tracing::info!(%addr, "serving admin");
            }
            Some((admin_listener, handle))
        }
    };
    let engine = Arc::new(app::build_engine(
        &settings,
        model,
        Arc::new(SystemClock),
        key,
    )?);
    // Campaign settings changed at run time (stored beside the ledger)
    // replace the config's before the first call is served.
    let campaigns = Arc::new(
        nudge::engine::campaigns::CampaignService::start(
            engine.clone(),
            app::settings_store(&settings)?,
        )
        .await,
    );
    // The model history's live model replaces a stale model file (an old
    // image, a rollback) before the first call; a new file is published.
    let models = Arc::new(
        nudge::engine::models::ModelService::new(
            engine.clone(),
            app::model_registry(&settings)?,
            settings.model_history_keep,
            &model_text,
        )
        .with_file(app::model_file(&settings)),
    );
    let model_origin = if app::model_file(&settings).is_some() {
        "file"
    } else {
        "embedded"
    };
    models.start(&model_text, model_origin).await;
    drop(model_text);
    let background = app::Background::spawn(
        engine.clone(),
        settings.sweep_interval,
        app::pacing_file(&settings),
    );
    // One signal stops both servers and the readiness probe.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = on_signal.send(true);
    });
    let signalled = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (readiness, probe) = app::readiness::spawn(engine.clone(), stopped.clone());
    let refresh = tokio::spawn(
        campaigns
            .clone()
            .run_refresh(nudge::engine::campaigns::REFRESH_EVERY, stopped.clone()),
    );
    // SIGHUP and a changed model file: the same flags and environment as
    // this start.
    let reload = app::reload::Reloader {
        engine: engine.clone(),
        campaigns: campaigns.clone(),
        models: models.clone(),
        running: settings.clone(),
        load_settings: Box::new(move || crate::settings(&reload_args).map_err(|e| e.to_string())),
    }
    .spawn(stopped.clone());
    // The daily retraining, when `[autotrain]` is enabled.
    let autotrain = app::autotrain::spawn(&settings, stopped.clone());
    let admin = admin.map(|(l, handle)| {
        let api = nudge::admin::api::Api {
            engine: engine.clone(),
            campaigns: campaigns.clone(),
            models: models.clone(),
            tokens: Arc::new(settings.admin_tokens.clone()),
        };
        tokio::spawn(nudge::admin::serve(
            l,
            nudge::admin::app(handle.clone(), readiness.clone(), Some(api)),
            handle,
            tls.as_ref().map(|t| t.admin.clone()),
            app::listener::Timeouts {
                handshake: settings.server.handshake_timeout,
                idle: settings.server.idle_timeout,
            },
            signalled(stopped.clone()),
        ))
    });
    let options = app::ServeOptions {
        server: settings.server,
        readiness: Some(readiness),
        tokens: settings.admin_tokens.clone(),
        tls: tls.map(|t| t.grpc),
        cors: settings.cors.clone(),
    };
    let served = app::run_with_options(
        listener,
        engine.clone(),
        options,
        signalled(stopped.clone()),
    )
    .await;
    // gRPC may also stop on an error: the admin server goes with it.
    let _ = stop.send(true);
    if let Some(admin) = admin {
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "admin server failed"),
            Err(e) => tracing::error!(error = %e, "admin server task failed"),
        }
    }
    let _ = probe.await;
    let _ = refresh.await;
    let _ = reload.await;
    if let Some(autotrain) = autotrain {
        let _ = autotrain.await;
    }
    background.stop().await;
    engine.log.flush().await;
    tracing::info!(
        written = engine.log.written(),
        dropped = engine.log.dropped(),
        "decision log flushed"
    );
    served?;
    Ok(())
}

async fn simulate(a: SimulateCli) -> Result<(), Box<dyn std::error::Error>> {
    let args = nudge::sim::SimulateArgs {
        seed: a.seed,
        world: a.world,
        sessions_per_hour: a.sessions_per_hour,
        hours: a.hours,
        budgets_eur: a.budgets.unwrap_or_else(|| match a.days {
            Some(_) => vec![1_000],
            None => vec![500, 1_000, 5_000],
        }),
        config: a.config,
        model: a.model,
        out_dir: (!a.no_out).then_some(a.out),
        json: a.json,
        nudge_without_holdout: !a.no_holdout_variant,
        nudge_exit_intent: !a.no_exit_intent_variant,
        blanket_voucher_cents: a.blanket_voucher_cents,
        log_dir: a.log_dir,
        days: a.days,
        svg: a.svg,
        html: a.html,
        run_dir: a.run_dir,
        train_config: a.train_config,
    };
    let text = nudge::sim::run_cli(args).await.map_err(|e| e.to_string())?;
    print!("{text}");
    Ok(())
}

async fn model(command: ModelCommand) -> Result<(), Box<dyn std::error::Error>> {
    use nudge::app::model_cli;
    let args = match &command {
        ModelCommand::List(a) => a,
        ModelCommand::Publish { args, .. }
        | ModelCommand::Rollback { args, .. }
        | ModelCommand::Pull { args, .. } => args,
    };
    let settings = settings(&ServeArgs {
        config: args.config.clone(),
        data_dir: args.data_dir.clone(),
        ..ServeArgs::default()
    })?;
    let registry = model_cli::registry(&settings)?;
    match command {
        ModelCommand::List(_) => print!("{}", model_cli::list(&*registry).await?),
        ModelCommand::Publish {
            file,
            reason,
            force,
            ..
        } => {
            let e = model_cli::publish(
                &*registry,
                settings.model_history_keep,
                &file,
                &reason,
                force,
            )
            .await?;
            println!("live: seq {} version {}", e.seq, e.version);
        }
        ModelCommand::Rollback { reason, .. } => {
            let (live, back) = model_cli::rollback(&*registry, &reason).await?;
            println!(
                "rolled back seq {} ({}); live: seq {} version {}",
                back.seq, back.version, live.seq, live.version
            );
        }
        ModelCommand::Pull { out, .. } => {
            let e = model_cli::pull(&*registry, &out).await?;
            println!(
                "wrote {} (seq {} version {})",
                out.display(),
                e.seq,
                e.version
            );
        }
    }
    Ok(())
}

fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("--since {s:?}: not RFC 3339 nor epoch milliseconds: {e}"))
}

async fn report(args: ReportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut raw = RawConfig::load(args.config.as_deref())?;
    if let Some(d) = &args.data_dir {
        raw.data_dir = Some(d.clone());
    }
    // The same tokens as the service, so that a config valid for it is here.
    raw.admin.env_tokens = std::env::var(nudge::auth::ENV_TOKENS)
        .ok()
        .map(nudge::config::Secret);
    let settings = raw.validate()?;
    let since = args
        .since
        .as_deref()
        .map(parse_since)
        .transpose()?
        .unwrap_or(0);
    if let Some(dir) = args.log_dir.as_deref().filter(|d| !d.is_dir()) {
        return Err(format!("--log-dir {}: no such directory", dir.display()).into());
    }
    let log_dir = args
        .log_dir
        .clone()
        .unwrap_or_else(|| settings.data_dir.join("log"));
    // Read-only: a missing ledger or log is "nothing recorded yet"; no
    // file or directory is created and no pacing state restored.
    let found = app::report_from_files(&settings, log_dir, since).await?;
    if args.json {
        // Stdout stays one JSON document; the notes go to stderr.
        for note in &found.notes {
            eprintln!("nudge: {note}");
        }
        let json = serde_json::to_string_pretty(&found.report)?;
        println!("{json}");
    } else {
        for note in &found.notes {
            println!("{note}");
        }
        print!("{}", nudge::report::render_table(&found.report));
    }
    Ok(())
}
