//! `osprey slo rules`: an SLO job as Prometheus rules.

use std::path::PathBuf;
use std::process::ExitCode;

use osprey::slo::rules::{rules_yaml, Metrics};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the SLO job's burn-rate alerts as Prometheus recording and alerting rules (promtool check rules accepts them).
    Rules(RulesArgs),
}

#[derive(clap::Args)]
pub struct RulesArgs {
    /// The SLO job file.
    job: PathBuf,
    /// The counter of all events (labelled slo="<job>" and by the SLO's labels).
    #[arg(long, default_value = "osprey_slo_events_total")]
    events_metric: String,
    /// The counter of bad events.
    #[arg(long, default_value = "osprey_slo_bad_events_total")]
    bad_metric: String,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Rules(args) => {
            let job = super::load_job(&args.job)?;
            let Some(slo) = job.config::<osprey::slo::SloConfig>() else {
                anyhow::bail!("{}: job `{}` is not an SLO job (kind = \"slo\"); rules are made from its [slo] table", args.job.display(), job.name);
            };
            let for_ = job.alerts.as_ref().map(|a| a.timing.for_).unwrap_or(0);
            let metrics = Metrics { events: args.events_metric, bad: args.bad_metric };
            print!("{}", rules_yaml(&job.name, slo, for_, &metrics));
            Ok(ExitCode::SUCCESS)
        }
    }
}
