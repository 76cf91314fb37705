//! The `tessera` binary: parse flags, run one command, and print a failure
//! as one line. A user's error (a flag, a file, an unreachable database) is
//! not a bug, so it never gets a backtrace, whatever RUST_BACKTRACE says;
//! panics, which are bugs, keep theirs.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

#[tokio::main]
async fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    let parsed = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    match cli::run(parsed, &matches).await {
        Ok(code) => code,
        Err(err) => {
            // `{:#}`: the causes on one line, without anyhow's backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
