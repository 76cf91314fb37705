//! `tessera-bench`: a closed-loop load generator over real gRPC, a binary
//! of its own so that the service carries none of it.
//!
//! `concurrency` tasks share `connections` HTTP/2 connections; each task
//! sends its next call as soon as the previous one answered, for
//! `duration` after a warm-up. Latency is measured per call on the client;
//! the server's peak RSS is read from /proc when the server runs on this
//! machine. On a terminal, stderr shows the pre-minting and then the rate
//! of calls each second; stdout has only the report. `--print-sql` prints the statements each hot call runs on
//! PostgreSQL, for bench/compare.py to hand to pgbench. `--floor` serves
//! one of the floors bench/count.py counts Tessera against instead.

mod floor;
mod http;
mod load;
mod progress;
mod propagation;
mod report;

use clap::Parser;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    args: load::BenchArgs,
    #[command(flatten)]
    floor: floor::FloorArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(floor) = cli.floor.floor {
        return floor::serve(floor, cli.floor).await;
    }
    let args = cli.args;
    if args.print_sql {
        let statements = hot_path();
        println!("{}", serde_json::to_string_pretty(&statements)?);
        return Ok(());
    }
    let json = args.json;
    let report = load::run(args).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        report.print_text();
    }
    Ok(())
}

/// The statements each hot RPC runs on success, in order and by name, as
/// the PostgreSQL store defines them: bench/compare.py hands them to
/// pgbench.
fn hot_path() -> std::collections::BTreeMap<&'static str, Vec<(&'static str, &'static str)>> {
    use tessera::store::{Dialect, postgres::batch_statements};
    let (shared, own) = (
        <sqlx::Postgres as Dialect>::statements(),
        batch_statements(),
    );
    [
        ("validate", vec![("find", shared.find)]),
        (
            "claim",
            vec![("find", shared.find), ("consume", shared.consume)],
        ),
        (
            "claim-keyed",
            vec![
                ("find_keyed", shared.find_keyed),
                ("consume_keyed", own.consume_keyed),
            ],
        ),
        ("mint", vec![("insert", shared.insert)]),
    ]
    .into_iter()
    .collect()
}
