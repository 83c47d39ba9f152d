//! The `sensorcast` binary: parses arguments, sets up logging, binds the listeners, turns
//! SIGTERM/SIGINT into a cancellation, and calls [`sensorcast::run`] (or, for `simulate`,
//! [`sensorcast::simulate::run`]). Nothing else lives here.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

use sensorcast::config::Config;
use sensorcast::core::registry::Registry;

#[derive(Parser)]
#[command(
    name = "sensorcast",
    version,
    about = "MQTT sensor readings to Socket.io rooms"
)]
struct Cli {
    /// Service config file (TOML). Env: SENSORCAST_CONFIG.
    #[arg(
        long,
        global = true,
        env = "SENSORCAST_CONFIG",
        default_value = "/etc/sensorcast/sensorcast.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and the registry it points to, then exit 0 (valid) or 1.
    CheckConfig,
    /// Publish realistic readings for every registered sensor to the configured broker.
    Simulate {
        /// Time between two readings of one sensor ("500ms", "5s", "1m").
        #[arg(long, default_value = "5s", value_parser = sensorcast::core::duration::duration_str::parse)]
        interval: std::time::Duration,
        /// Publish one reading per sensor, wait for the broker's acks, and exit.
        #[arg(long)]
        once: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = sensorcast::service::reload::load(&cli.config);
    if let Some(Command::CheckConfig) = cli.command {
        return match loaded {
            Ok((config, registry)) => {
                let (o, s, u, n) = registry.counts();
                println!(
                    "{}: ok ({o} orgs, {s} sites, {u} units, {n} sensors; registry {})",
                    cli.config.display(),
                    config.registry.file.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let (config, registry) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let log_level = init_tracing(&config);
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Some(Command::Simulate { interval, once }) = cli.command {
        let opts = sensorcast::simulate::Options { interval, once };
        return match runtime.block_on(simulate(config, registry, opts)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(serve(config, registry, log_level)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Config,
    registry: Registry,
    log_level: sensorcast::service::reload::LogLevelSetter,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let metrics = bind_metrics(&config).await;
    let mut control = sensorcast::Control::new(CancellationToken::new());
    control.log_level = Some(log_level);
    tokio::spawn(watch_signals(
        control.shutdown.clone(),
        control.reload.clone(),
    ));
    sensorcast::run_with(
        config,
        registry,
        sensorcast::Listeners {
            http: listener,
            metrics,
        },
        control,
    )
    .await?;
    Ok(())
}

/// The metrics listener, when enabled. A failure to bind is logged, not fatal: readings and
/// alerts matter more than their metrics, and Prometheus shows the target as down.
async fn bind_metrics(config: &Config) -> Option<tokio::net::TcpListener> {
    let m = &config.metrics;
    if !m.enabled {
        return None;
    }
    match tokio::net::TcpListener::bind(m.listen).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(addr = %m.listen, error = %e, "cannot listen for /metrics; serving without metrics");
            None
        }
    }
}

async fn simulate(
    config: Config,
    registry: Registry,
    opts: sensorcast::simulate::Options,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shutdown = CancellationToken::new();
    // SIGHUP means nothing to the simulator: restart it to pick up a new registry.
    let reload = std::sync::Arc::new(tokio::sync::Notify::new());
    tokio::spawn(watch_signals(shutdown.clone(), reload));
    sensorcast::simulate::run(&config, &registry, opts, shutdown).await?;
    Ok(())
}

/// First SIGTERM/SIGINT: graceful shutdown. Second: exit at once. SIGHUP: reload.
async fn watch_signals(shutdown: CancellationToken, reload: std::sync::Arc<tokio::sync::Notify>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let mut n = 0;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config and registry");
                reload.notify_one();
                continue;
            }
        }
        n += 1;
        if n == 1 {
            tracing::info!("signal received, shutting down (send again to exit at once)");
            shutdown.cancel();
        } else {
            tracing::warn!("second signal, exiting now");
            std::process::exit(130);
        }
    }
}

/// Every connection holds a file descriptor, and so do the broker connection and the state
/// files: raise the soft `RLIMIT_NOFILE` to the hard one (systemd's default soft limit is 1024;
/// the unit sets `LimitNOFILE=`). The HTTP connection cap follows what this leaves
/// (`core::connections`).
fn raise_fd_limit() {
    let before = rlimit::Resource::NOFILE.get().ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => tracing::info!(soft_before = ?before.map(|l| l.0), now, "file descriptor limit"),
        Err(e) => {
            tracing::warn!(error = %e, limit = ?before, "cannot raise the file descriptor limit")
        }
    }
}

/// Sets up logging; returns the setter a reload uses to change the level. RUST_LOG, when set,
/// wins over the config's level (and then a reload leaves it alone). Filters are
/// `tracing_subscriber`'s `Targets` (`info`, `sensorcast=debug,info`): `EnvFilter`'s span and
/// field matching would bring a regex engine (about 270 KB of the binary) that nothing uses.
fn init_tracing(config: &Config) -> sensorcast::service::reload::LogLevelSetter {
    use tracing_subscriber::{filter::Targets, prelude::*, reload};
    let from_env =
        std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| match sensorcast::config::log_filter(&v) {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!("warning: RUST_LOG ignored: {e}");
                    None
                }
            });
    let env_wins = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| {
        sensorcast::config::log_filter(&config.log.level).unwrap_or_else(|_| Targets::new())
    });
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    if config.log.format == "json" {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
    Box::new(move |level: &str| {
        if env_wins {
            return Err("RUST_LOG is set and wins over log.level".into());
        }
        let filter = sensorcast::config::log_filter(level)?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}
