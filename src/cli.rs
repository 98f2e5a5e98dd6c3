//! Command-line types only; `app` gives them meaning.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "fleetroll",
    version,
    about = "Roll a change across a fleet of VMs without taking the service down",
    after_help = "Exit codes: 0 success, 1 halted or rolled back, 2 invalid input, \
                  3 maintenance window closed, 4 locked by another run, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More detail on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also append a plain-text, timestamped log of the command (its
    /// diagnostics and the run's progress lines) to FILE, as for cron.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check the inventory and playbook; touch nothing.
    Validate(FileArgs),
    /// Print the batches `run` would execute, in order; contact nothing.
    Plan(PlanArgs),
    /// Execute the rollout.
    Run(RunArgs),
    /// Continue an interrupted or halted run (the inventory's latest when no
    /// id is given).
    Resume(ResumeArgs),
    /// Show a run's progress from its journal.
    Status(StatusArgs),
    /// Deployment metrics over every run of an inventory: runs by outcome,
    /// success rate, step failure rate, time to deploy, rollback frequency
    /// and time to roll back, hosts by outcome, time out of service.
    History(HistoryArgs),
    /// Write a run's report as one self-contained HTML page: every host's
    /// phases on a time axis, capacity over time, failures, a summary.
    Report(ReportArgs),
    /// Convert another tool's inventory into a fleetroll inventory.
    #[command(subcommand)]
    Import(ImportSource),
    /// Run the playbook's [[rollback]] steps on the hosts a run changed, in
    /// reverse batch order, with the same drain and probe discipline.
    Rollback(RollbackArgs),
    /// Show the lock holders; with --force, break a stale lock.
    Unlock(UnlockArgs),
    /// Roll an update across a simulated fleet started in-process (real SSH
    /// servers, HTTP apps, a drain-aware balancer, live traffic).
    Demo(DemoArgs),
    /// Print a shell completion script: `fleetroll completions bash >
    /// /etc/bash_completion.d/fleetroll`.
    Completions(CompletionsArgs),
    /// Print the man page (roff): `fleetroll man > fleetroll.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Machine events on stdout, one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Also write the run's report (as `fleetroll report --html`) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Roll a bad release: its health check passes while 30% of its real
    /// requests fail. The demo's playbook then has a [watch], which catches
    /// it on the first host: the run halts there (exit 1).
    #[arg(long)]
    pub bad_release: bool,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// Keep the lock and journals here instead of where the inventory's
    /// [state] says (by default `.fleetroll` next to the inventory).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Where the commands that read runs find them: the inventory's state
/// (its [state] table), or a state directory, or both (the directory,
/// and only that inventory's runs in it).
#[derive(Debug, Args)]
#[group(id = "runs", required = true, multiple = true)]
pub struct RunsArgs {
    /// The inventory whose runs to use; its [state] says where they live.
    #[arg(short = 'i', long = "inventory", value_name = "INV")]
    pub inventory: Option<PathBuf>,
    /// The state directory to use, overriding the inventory's [state].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Machine events on stdout, one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Record unknown host keys, like OpenSSH's StrictHostKeyChecking=accept-new.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Write the run's figures here in the Prometheus text format.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Connect and check every host (SSH, skip_if, balancers); change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The run whose changes to undo.
    pub run_id: String,
    #[command(flatten)]
    pub recorded: RecordedRunArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to continue; the inventory's latest when omitted.
    pub run_id: Option<String>,
    #[command(flatten)]
    pub recorded: RecordedRunArgs,
}

/// What `resume` and `rollback` take besides the run: the run's own
/// settings come from its journal.
#[derive(Debug, Args)]
pub struct RecordedRunArgs {
    #[command(flatten)]
    pub runs: RunsArgs,
    /// The run's playbook, where it is on this machine (by default where
    /// the run had it); it must have the steps the run started with.
    #[arg(short = 'p', long = "playbook", value_name = "PLAYBOOK")]
    pub playbook: Option<PathBuf>,
    /// Variables the run was started with must be given again (they are
    /// not written to the journal, as they may be secrets).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Machine events on stdout, one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Write the run's figures here in the Prometheus text format.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run to show; the inventory's latest when omitted.
    pub run_id: Option<String>,
    #[command(flatten)]
    pub runs: RunsArgs,
    /// One JSON object describing the run.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// An Ansible inventory (INI or YAML, with host_vars/ and group_vars/
    /// beside it): hosts, their SSH settings, zones and variables; what
    /// cannot be carried over is listed in the output and on stderr.
    Ansible(AnsibleImportArgs),
}

#[derive(Debug, Args)]
pub struct AnsibleImportArgs {
    /// The Ansible inventory file.
    pub file: PathBuf,
    /// Where zones come from: `group:PREFIX` (the host's group named
    /// PREFIX…, the prefix stripped) or `var:NAME` (a host variable).
    /// Without it, every host goes to one zone, `default`.
    #[arg(long, value_name = "group:PREFIX|var:NAME")]
    pub zone_from: Option<String>,
    /// Write the inventory to FILE (refused if it exists) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run; the inventory's latest when omitted.
    pub run_id: Option<String>,
    #[command(flatten)]
    pub runs: RunsArgs,
    /// Where to write the page (inline CSS and SVG; it fetches nothing).
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub runs: RunsArgs,
    /// Only runs started on or after this date (`2026-11-01`) or time
    /// (`2026-11-01T02:00:00Z`).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// One JSON object with every figure.
    #[arg(long)]
    pub json: bool,
    /// Also write the figures as Prometheus gauges to FILE (replaced
    /// atomically), for node_exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The inventory's lock; with only --state-dir, every lock there.
    #[command(flatten)]
    pub runs: RunsArgs,
    /// Break locks whose holder is dead (a live holder's lock is never broken).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The inventory: hosts by zone, balancers, sources.
    #[arg(short = 'i', long = "inventory", value_name = "INV")]
    pub inventory: PathBuf,
    /// The playbook: strategy, steps, probes.
    #[arg(short = 'p', long = "playbook", value_name = "PLAY")]
    pub playbook: PathBuf,
    /// Override a playbook variable (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Only hosts or zones matching this name or glob (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub limit: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub files: FileArgs,
    /// Print the plan as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not contact AWS: hosts of [sources] are left out of the plan.
    #[arg(long)]
    pub offline: bool,
}

fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}
