//! The command line: one module per command, its argh flags and its run side by side, from
//! parsed command line to finished work. Settings are resolved (flags, environment,
//! defaults; `settings`), inputs opened, and the command carried out. Errors come back with
//! a class that `main` turns into the exit code.

use std::io::IsTerminal;
use std::sync::Arc;

use argh::FromArgs;

mod clean;
mod concurrency;
mod connection;
mod copy;
mod extract;
mod list;
mod pull;
mod push;
mod push_all;
mod save;
mod settings;
mod verify;

pub use clean::CleanArgs;
pub use concurrency::ConcurrencyFlags;
pub(crate) use connection::{Connection, ConnectionFlags, parse_target};
pub use copy::CopyArgs;
pub use extract::ExtractArgs;
pub use list::ListArgs;
pub use pull::PullArgs;
pub use push::PushArgs;
pub use save::SaveArgs;
pub use settings::Env;
pub use verify::VerifyArgs;

use crate::error::{Error, Result};
use crate::ui::progress::{Reporter, Verbosity};

/// Runs the tool with `args` (without the program name) and returns the exit code.
pub fn main_with_args(program: &str, args: &[String]) -> i32 {
    let args = settings::normalize_args(args);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cli = match Cli::from_args(&[program], &refs) {
        Ok(cli) => cli,
        Err(early) => {
            return match early.status {
                Ok(()) => match write_stdout(&format!("{}\n", early.output)) {
                    Ok(()) => 0,
                    Err(error) => report(&error),
                },
                Err(()) => {
                    eprintln!("{}", early.output.trim_end());
                    2
                }
            };
        }
    };
    match run(cli, &settings::process_env) {
        Ok(()) => 0,
        Err(error) => report(&error),
    }
}

fn report(error: &Error) -> i32 {
    eprintln!(
        "{}",
        crate::text::sanitize::inert_lines(&format!("error: {error}"))
    );
    error.exit_code()
}

/// Writes `text` to stdout. A reader that closed the pipe early (`list | head`) has what
/// it wanted: that is no error and nothing is said about it.
pub(crate) fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::input(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

#[derive(FromArgs, Debug)]
/// Move container images between docker save / OCI archives, a local cache and registries.
///
/// The older form `docker-image-pusher -r URL -f FILE [flags]` still means `push`.
#[argh(help_triggers("-h", "--help", "help"))]
pub struct Cli {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,

    #[argh(subcommand)]
    pub command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Push(PushArgs),
    Pull(PullArgs),
    Extract(ExtractArgs),
    List(ListArgs),
    Clean(CleanArgs),
    Save(SaveArgs),
    Verify(VerifyArgs),
    Copy(CopyArgs),
}

fn run(cli: Cli, env: Env) -> Result<()> {
    let Some(command) = cli.command else {
        if cli.version {
            return write_stdout(&format!(
                "docker-image-pusher {}\n",
                env!("CARGO_PKG_VERSION")
            ));
        }
        return Err(Error::usage("no command given")
            .hint("run docker-image-pusher --help for the commands"));
    };
    match command {
        Command::Push(args) => push::run_push(args, env),
        Command::Pull(args) => pull::run_pull(args, env),
        Command::Extract(args) => extract::run_extract(args, env),
        Command::List(args) => list::run_list(args, env),
        Command::Clean(args) => clean::run_clean(args, env),
        Command::Save(args) => save::run_save(args, env),
        Command::Verify(args) => verify::run_verify(args, env),
        Command::Copy(args) => copy::run_copy(args, env),
    }
}

/// The reporter for commands that move blobs: a live display on a terminal, plain lines
/// otherwise (see `progress::Display::choose`).
pub(crate) fn transfer_reporter(verbosity: Verbosity, env: Env) -> Arc<Reporter> {
    let display = crate::ui::progress::Display::choose(
        std::io::stderr().is_terminal(),
        env("TERM").as_deref(),
        env("NO_COLOR").as_deref(),
        env("COLUMNS").as_deref(),
    );
    Arc::new(Reporter::with_display(verbosity, display))
}

pub(crate) fn verbosity(quiet: bool, verbose: bool) -> Verbosity {
    if quiet {
        Verbosity::Quiet
    } else if verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    }
}
