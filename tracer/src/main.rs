//! `tracer`: CLI, logging and signals; everything else is in the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use tracer::{config::Config, export::lines::OutputFormat};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "eBPF zero-instrumentation service tracer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the probes and trace TCP connections (needs root: CAP_BPF, CAP_PERFMON).
    Run(RunArgs),
    /// Parse and validate a config file (and the OTEL_* environment) without
    /// starting anything: exits non-zero naming the offending key.
    CheckConfig {
        /// TOML config file.
        file: PathBuf,
    },
    /// Compare two versions of a service on a running agent (its
    /// /api/compare) and print the verdicts; exits 2 when the verdict is one
    /// of --fail-on (a CI/CD gate), 1 when there is no comparison.
    Compare(tracer::versions::cli::CompareArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// TOML config file (see deploy/tracer.toml); flags override it.
    #[arg(short, long, env = "TRACER_CONFIG")]
    config: Option<PathBuf>,
    /// What to print on stdout.
    #[arg(long, value_enum)]
    output: Option<OutputFormat>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long)]
    api_addr: Option<SocketAddr>,
    /// Payload bytes captured per read/write syscall (max 4096).
    #[arg(long)]
    capture_bytes: Option<u32>,
    /// Also print one line per data event: syscall, bytes, TCP sequence number
    /// and the payload's first line (debugging capture).
    #[arg(long)]
    data_events: bool,
    /// Hook accept() to name a server connection's process at once (costs
    /// every syscall a little; see `capture.accept_hook`).
    #[arg(long)]
    accept_hook: bool,
    /// Record db.query.text on database spans (literal-free; see
    /// `database.query_text`).
    #[arg(long)]
    db_query_text: bool,
    /// Watch only one network namespace: /var/run/netns/<name>,
    /// /proc/<pid>/ns/net, or an inode number.
    #[arg(long)]
    netns: Option<String>,
    /// The business view's history file (`business.history.path`; turns
    /// the history on).
    #[arg(long)]
    history: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Run(args) => run(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Compare(args) => match tracer::versions::cli::run(&args) {
            Ok(true) => return ExitCode::from(2),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        },
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(o) = args.output {
        cfg.output = o;
    }
    if let Some(a) = args.api_addr {
        cfg.api.addr = a;
    }
    cfg.data_events |= args.data_events;
    cfg.capture.accept_hook |= args.accept_hook;
    cfg.database.query_text |= args.db_query_text;
    if args.netns.is_some() {
        cfg.capture.netns = args.netns;
    }
    if let Some(p) = args.history {
        cfg.business.history.path = p;
        cfg.business.history.enabled = true;
    }
    if let Some(c) = args.capture_bytes {
        cfg.capture.capture_bytes = c;
    }
    // Every thread asks for a long scheduler slice (see tracer::sched): this
    // one before it starts any, tokio's as they start.
    let slice_ns = cfg.scheduler.slice_ns();
    if let Err(e) = tracer::sched::set_thread_slice(slice_ns) {
        tracing::warn!(
            "could not ask for {slice_ns} ns scheduler slices (sched_setattr): {e}; keeping the kernel's default"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(move || {
            let _ = tracer::sched::set_thread_slice(slice_ns);
        })
        .enable_all()
        .build()?;
    rt.block_on(tracer::run(cfg, shutdown_signal()))
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let cfg = Config::from_file(file)?;
    // The OTLP settings come from the file and OTEL_* variables together.
    tracer::export::otlp::resolve_from_env(&cfg.otlp)?;
    println!("{}: ok", file.display());
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
