//! The composition root: runs a parsed command and maps failures to exit codes.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

mod commands;
mod dry_run;
mod history;
mod import;
pub(crate) mod rollout;
mod sources;
mod state;

use crate::cli::{Cli, Command, FileArgs, PlanArgs};
use crate::config::diagnostics::{Diagnostic, Diagnostics};
use crate::config::load::{Config, LoadOptions, load};
use crate::config::source::SourceFile;
use crate::plan::batches::{Plan, PlanError, plan_batches};
use crate::plan::render::{PlanView, render_human, render_json};
use crate::plan::select::select;

/// Exit codes from the SPEC, named once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Halted = 1,
    InvalidInput = 2,
    WindowClosed = 3,
    Locked = 4,
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A run-level failure: everything here ends the command.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid input")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Lock(crate::lock::LockError),
    #[error(transparent)]
    Journal(crate::journal::store::JournalError),
    #[error(transparent)]
    Run(crate::exec::dispatcher::RunError),
}

impl AppError {
    pub fn exit(&self) -> Exit {
        match self {
            AppError::Invalid(_) => Exit::InvalidInput,
            AppError::Lock(
                crate::lock::LockError::Held { .. } | crate::lock::LockError::FleetHeld { .. },
            ) => Exit::Locked,
            AppError::Lock(_) | AppError::Journal(_) | AppError::Run(_) => Exit::Halted,
        }
    }

    /// What the user reads on stderr.
    pub fn render(&self, color: bool) -> String {
        match self {
            AppError::Invalid(diagnostics) => {
                let mut out = diagnostics.render(color);
                let errors = diagnostics.error_count();
                out.push_str(&format!(
                    "{} {}; nothing was touched\n",
                    errors,
                    if errors == 1 { "error" } else { "errors" }
                ));
                out
            }
            AppError::Lock(error) => format!("fleetroll: {error}\n"),
            AppError::Journal(error) => format!("fleetroll: {error}\n"),
            AppError::Run(error) => format!("fleetroll: {error}\n"),
        }
    }
}

/// What `run` and `resume` were asked to do, resolved from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub inventory: PathBuf,
    pub playbook: PathBuf,
    pub vars: Vec<(String, String)>,
    pub limit: Vec<String>,
    /// Where the inventory's lock and journals live.
    pub state: crate::state::Store,
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
    /// stderr is a terminal: draw progress bars.
    pub terminal: bool,
    pub accept_new_host_keys: bool,
    pub metrics_file: Option<PathBuf>,
    pub clock: crate::clock::Clock,
}

pub fn run(cli: Cli) -> ExitCode {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let verbosity = crate::logging::Verbosity {
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    if let Err(error) = crate::logging::init(verbosity, cli.log_file.as_deref()) {
        let error = AppError::Invalid(Diagnostic::plain(error.to_string()).into());
        eprint!("{}", error.render(color));
        return error.exit().into();
    }
    let result = match cli.command {
        Command::Validate(args) => validate(&args, cli.quiet, cli.verbose > 0, color),
        Command::Plan(args) => plan(&args, cli.quiet, color),
        Command::Run(args) => commands::run(&args, cli.quiet, cli.verbose > 0, color),
        Command::Resume(args) => commands::resume(&args, cli.quiet, cli.verbose > 0, color),
        Command::Status(args) => commands::status(&args),
        Command::History(args) => history::history(&args),
        Command::Report(args) => history::report(&args),
        Command::Import(crate::cli::ImportSource::Ansible(args)) => import::ansible(&args),
        Command::Rollback(args) => commands::rollback(&args, cli.quiet, cli.verbose > 0, color),
        Command::Unlock(args) => commands::unlock(&args),
        Command::Demo(args) => commands::demo(&args, cli.quiet, cli.verbose > 0, color),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                args.shell,
                &mut command,
                "fleetroll",
                &mut std::io::stdout(),
            );
            Ok(Exit::Success)
        }
        Command::Man => man_page(),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprint!("{}", error.render(color));
            error.exit().into()
        }
    }
}

/// The man page, generated from the command line's own definition.
fn man_page() -> Result<Exit, AppError> {
    let command = <Cli as clap::CommandFactory>::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .and_then(|()| std::io::stdout().write_all(&page))
        .map_err(|error| {
            AppError::Invalid(
                Diagnostic::plain(format!("cannot write the man page: {error}")).into(),
            )
        })?;
    Ok(Exit::Success)
}

pub(crate) fn load_config(args: &FileArgs, quiet: bool, color: bool) -> Result<Config, AppError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let options = LoadOptions {
        overrides: &args.vars,
        home: home.as_deref(),
        read_ssh_config: true,
    };
    let config = load(&args.inventory, &args.playbook, &options).map_err(AppError::Invalid)?;
    if !quiet && !config.warnings.is_empty() {
        eprint!("{}", config.warnings.render(color));
    }
    Ok(config)
}

/// Selects and plans; plan errors point at the strategy in the playbook.
pub(crate) fn make_plan(config: &Config, limit: &[String]) -> Result<Plan, AppError> {
    let input = select(&config.inventory, limit)
        .map_err(|error| AppError::Invalid(Diagnostic::plain(error.to_string()).into()))?;
    plan_batches(&input, &config.playbook.strategy)
        .map_err(|error| AppError::Invalid(plan_diagnostic(&error, &config.playbook_file).into()))
}

fn plan_diagnostic(error: &PlanError, playbook: &SourceFile) -> Diagnostic {
    let message = error.to_string();
    let (key, help) = match error {
        PlanError::BatchOverCap { .. } => (
            "batch",
            "make every batch at most max_unavailable, or raise max_unavailable",
        ),
    };
    match key_value_span(playbook, key) {
        Some(span) => Diagnostic::at(playbook, span, message, "this batch size").with_help(help),
        None => Diagnostic::plain(message).with_help(help),
    }
}

/// The span of the value of `key = …` on the first line that sets it.
fn key_value_span(file: &SourceFile, key: &str) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    for line in file.text().split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            let value_start = line.find('=')? + 1;
            let value = line[value_start..].trim();
            let start = offset + value_start + line[value_start..].find(value)?;
            return Some(start..start + value.len());
        }
        offset += line.len();
    }
    None
}

fn validate(args: &FileArgs, quiet: bool, verbose: bool, color: bool) -> Result<Exit, AppError> {
    let config = load_config(args, quiet, color)?;
    let plan = make_plan(&config, &args.limit)?;
    sources::print_host_warnings(&config, quiet);
    if !quiet {
        let inventory = &config.inventory;
        let playbook = &config.playbook;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}: ok, {} hosts in {} zones, {} balancers, {} sources",
            config.inventory_file.name(),
            inventory.host_count(),
            inventory.zones.len(),
            inventory.balancers.len(),
            inventory.sources.len(),
        );
        let _ = writeln!(
            out,
            "{}: ok, {} steps, {} probes, {} gates, {} rollback steps; {} batches",
            config.playbook_file.name(),
            playbook.steps.len(),
            playbook.probes.len(),
            playbook.gates.len(),
            playbook.rollback.len(),
            plan.batches.len(),
        );
        if verbose {
            print_ssh_provenance(&mut out, &config);
        }
    }
    Ok(Exit::Success)
}

/// `validate -v`: every host's SSH settings and where each came from.
fn print_ssh_provenance(out: &mut impl Write, config: &Config) {
    for host in config.inventory.hosts() {
        let _ = writeln!(out, "\nhost {} (zone {}):", host.name, host.zone);
        let rows = crate::config::openssh::provenance(host);
        let width = rows.iter().map(|(key, ..)| key.len()).max().unwrap_or(0);
        let value_width = rows
            .iter()
            .map(|(_, value, _)| value.len())
            .max()
            .unwrap_or(0);
        for (key, value, origin) in rows {
            let _ = writeln!(out, "  {key:<width$}  {value:<value_width$}  {origin}");
        }
    }
}

fn plan(args: &PlanArgs, quiet: bool, color: bool) -> Result<Exit, AppError> {
    let mut config = load_config(&args.files, quiet || args.json, color)?;
    let online = !args.offline && !config.inventory.sources.is_empty();
    let runtime = match online {
        true => Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    AppError::Invalid(
                        Diagnostic::plain(format!("cannot start the runtime: {e}")).into(),
                    )
                })?,
        ),
        false => None,
    };
    let discovered = match &runtime {
        Some(runtime) => {
            let lines = runtime.block_on(sources::resolve_sources(&mut config))?;
            sources::print_host_warnings(&config, quiet || args.json);
            lines
        }
        None => Vec::new(),
    };
    let plan = make_plan(&config, &args.files.limit)?;
    if let Some(runtime) = &runtime {
        // What `run` would refuse before touching anything (an instance
        // refresh, no room under a group's max size for a batch's surge,
        // Standby below its min size), `plan` refuses too.
        runtime.block_on(rollout::check_groups(&config, &plan, None))?;
    }
    let mut view = PlanView::new(&plan, &config.playbook, &config.inventory);
    view.discovered = discovered;
    let clock = crate::clock::Clock::from_env()
        .map_err(|e| AppError::Invalid(Diagnostic::plain(e).into()))?;
    view.now = Some(clock.now());
    let mut out = std::io::stdout().lock();
    let text = if args.json {
        render_json(&view) + "\n"
    } else {
        render_human(&view)
    };
    let _ = out.write_all(text.as_bytes());
    Ok(Exit::Success)
}
