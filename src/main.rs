//! The `gramfit` binary: parse arguments, run a command, map the outcome to
//! an exit code (0 success, 1 data or runtime error, 2 usage error).

use clap::{CommandFactory, FromArgMatches};
use gramfit::app::{self, AppError};
use gramfit::cli::{Cli, Command};

fn run(cli: Cli) -> Result<(), AppError> {
    match &cli.command {
        Command::Fit(a) => app::fit(a),
        Command::Run(a) => gramfit::config::run(a),
        Command::Summary(a) => app::summary(a),
        Command::Update(a) => app::update(a),
        Command::Merge(a) => app::merge(a),
        Command::Retract(a) => app::retract(a),
        Command::Corr(a) => app::corr(a),
        Command::Design(a) => app::design(a),
        Command::Diagnose(a) => app::diagnose(a),
        Command::Predict(a) => app::predict(a),
    }
}

fn main() {
    // `gramfit --version` says which kernels run (see `gramfit::isa`).
    let version = format!("{}\n{}", env!("CARGO_PKG_VERSION"), gramfit::isa::describe());
    let version: &'static str = Box::leak(version.into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Err(e) = gramfit::isa::check() {
        eprintln!("gramfit: error: {e}");
        std::process::exit(2);
    }
    gramfit::engine::tune_allocator();
    // Ctrl-C (and SIGTERM) stop the pass at the next chunk and a solve at
    // the next column; nothing half-done is saved, and the exit code is 130.
    gramfit::interrupt::install();
    if let Err(e) = run(cli) {
        if let AppError::Output(io) = &e {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
        eprintln!("gramfit: error: {e}");
        std::process::exit(e.exit_code());
    }
}
