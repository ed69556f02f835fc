//! `nudge`: the service binary. Parses flags, reads the config file, and
//! hands a listener and a shutdown signal to `nudge::server::run`.

use clap::{Parser, Subcommand};
use nudge::config::RawConfig;
use nudge::server;
use std::path::PathBuf;
use std::sync::Arc;

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
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// TOML config file; every field is optional (see README "Config").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, overriding the config (default 127.0.0.1:50051).
    #[arg(long)]
    listen: Option<String>,
    /// Model file, overriding the config (default models/default.json).
    #[arg(long)]
    model: Option<PathBuf>,
}

fn settings(args: &ServeArgs) -> Result<nudge::config::Settings, Box<dyn std::error::Error>> {
    let mut raw = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
            RawConfig::from_toml(&text)?
        }
        None => RawConfig::default(),
    };
    if let Some(l) = &args.listen {
        raw.listen = Some(l.clone());
    }
    if let Some(m) = &args.model {
        raw.model = Some(m.clone());
    }
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
    let (check_only, args) = match cli.command {
        None => (false, ServeArgs::default()),
        Some(Command::Serve(a)) => (false, a),
        Some(Command::CheckConfig(a)) => (true, a),
    };
    match serve(check_only, args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nudge: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(check_only: bool, args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let settings = settings(&args)?;
    let (model, source) = server::load_model(&settings)?;
    tracing::info!(model = %source, version = model.version(), "model loaded");
    if check_only {
        println!(
            "config ok: {settings:#?}\nmodel ok: {source} ({})",
            model.version()
        );
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let engine = Arc::new(server::embedded_engine(&settings, model));
    server::run(listener, engine, shutdown_signal()).await?;
    Ok(())
}
