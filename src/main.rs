//! The `osprey` command line.

mod cli;

/// mimalloc keeps freed chunk buffers for reuse instead of returning them to the kernel, which
/// otherwise costs a third of a replay in page faults.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's own option setter (linked in with the allocator).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    /// libc's.
    fn prctl(option: std::ffi::c_int, arg2: std::ffi::c_ulong, arg3: std::ffi::c_ulong, arg4: std::ffi::c_ulong, arg5: std::ffi::c_ulong) -> std::ffi::c_int;
}

/// A replay ends soon and frees as much as it allocates: keep freed pages instead of purging
/// them after mimalloc's default 10 ms, which made each chunk fault fresh pages in again, up
/// to a tenth of a replay's time. Long-running commands keep the default, so their memory goes
/// back to the system after a burst.
fn keep_freed_memory() {
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15; // mimalloc.h's mi_option_e
    // SAFETY: a plain option store in the allocator, valid at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// No transparent huge pages for commands that stream (replay, run, serve): mimalloc asks for
/// them, and each fault of one zeroes 2 MiB at once, or stalls where the kernel compacts memory
/// to serve it (`defrag=madvise`). Measured here: replays took 0.1-0.5 s of system time more
/// and their wall time varied twice as much; a live catch-up of 2M events spent a quarter of
/// its samples zeroing huge pages (librdkafka's fetch thread and the pipeline's), and without
/// them 0.74 s of system time became 0.32 s. mimalloc reads its own switch before `main`, so
/// the process asks the kernel directly (checked at each fault).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        const PR_SET_THP_DISABLE: std::ffi::c_int = 41; // linux/prctl.h
        // SAFETY: sets a flag on this process; failure (an old kernel) only keeps huge pages.
        let _ = unsafe { prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Osprey: windowed SQL over telemetry streams, from files, Kafka or a generator.
#[derive(Parser)]
#[command(name = "osprey", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Messages on stderr as text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: osprey::log::Format,
    /// Show messages at this level and above (error, warn, info).
    #[arg(long, global = true, value_enum, default_value = "info")]
    log_level: osprey::log::Level,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bundled jobs on built-in generated telemetry, with an injected incident; no Kafka needed.
    Demo(cli::demo::Args),
    /// Check job files: TOML, schema, event time, window, and the SQL planned by DataFusion.
    Validate {
        /// Job files (TOML).
        #[arg(required = true)]
        jobs: Vec<PathBuf>,
    },
    /// Run jobs over archived files (JSON lines, Parquet) or a range of their Kafka topic as fast as possible, closing every window at the end; jobs over one source read and decode it once.
    Replay(cli::replay::Args),
    /// Run jobs on their sources until Ctrl-C or SIGTERM; jobs over one source read and decode it once.
    Run(cli::run::Args),
    /// Write generated telemetry as JSON lines (for replays and benchmarks).
    Generate(cli::generate::Args),
    /// Print a job's plan (optimised once, run per window) and its result columns.
    Explain {
        /// The job file.
        job: PathBuf,
    },
    /// Print a job's declared, metadata, window and result columns, and where its output goes.
    Describe {
        /// The job file.
        job: PathBuf,
    },
    /// Print a shell completion script: osprey completions bash > /etc/bash_completion.d/osprey
    Completions {
        shell: clap_complete::Shell,
    },
    /// Run many jobs in one process with an HTTP API (submit, list, stop, restart, delete; /metrics).
    Serve(cli::serve::ServeArgs),
    /// Submit a job file to a running `osprey serve`.
    Submit {
        file: PathBuf,
        #[command(flatten)]
        client: cli::serve::Client,
    },
    /// List a server's jobs with their status and counters.
    Jobs {
        #[command(flatten)]
        client: cli::serve::Client,
    },
    /// Stop a job on a server.
    Stop {
        name: String,
        #[command(flatten)]
        client: cli::serve::Client,
    },
    /// A server's job: status, counters, last error.
    Logs {
        name: String,
        #[command(flatten)]
        client: cli::serve::Client,
    },
    /// Score the anomaly detectors: `nab` runs them over a Numenta Anomaly Benchmark folder.
    #[command(subcommand)]
    Eval(cli::eval::Command),
    /// SLO jobs: `rules` prints the equivalent Prometheus recording and alerting rules.
    #[command(subcommand)]
    Slo(cli::slo::Command),
    /// Read the alert stream: `tail` it, or `stats` on alert fatigue.
    #[command(subcommand)]
    Alerts(cli::alerts::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    osprey::log::init(cli.log_format, cli.log_level);
    let result = match cli.command {
        Command::Demo(args) => cli::demo::run(args),
        Command::Validate { jobs } => cli::validate::run(&jobs),
        Command::Replay(args) => {
            keep_freed_memory();
            no_huge_pages();
            cli::replay::run(args)
        }
        Command::Run(args) => {
            no_huge_pages();
            cli::run::run(args)
        }
        Command::Generate(args) => cli::generate::run(args),
        Command::Alerts(c) => cli::alerts::run(c),
        Command::Slo(c) => cli::slo::run(c),
        Command::Eval(c) => cli::eval::run(c),
        Command::Serve(a) => {
            no_huge_pages();
            cli::serve::serve(a)
        }
        Command::Submit { file, client } => cli::serve::submit(client, file),
        Command::Jobs { client } => cli::serve::jobs(client),
        Command::Stop { name, client } => cli::serve::stop(client, name),
        Command::Logs { name, client } => cli::serve::logs(client, name),
        Command::Explain { job } => cli::explain::explain(&job),
        Command::Describe { job } => cli::explain::describe(&job),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "osprey", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let text = format!("{e:#}");
            if text.starts_with("error:") || osprey::log::json() {
                osprey::log_error!("{text}")
            } else {
                osprey::log_error!("error: {text}")
            }
            ExitCode::FAILURE
        }
    }
}
