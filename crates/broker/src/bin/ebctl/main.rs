//! `ebctl`: a command-line client for a running eventbus broker.
//!
//! Map of the binary:
//!
//! - [`cli`]: the command line, and validation of topics and filters.
//! - [`failure`]: how errors become one stderr line and an exit code
//!   (0 success, 1 operational failure, 2 usage error).
//! - [`publish`], [`subscribe`], [`request`], [`reply`], [`result`], [`stats`],
//!   [`tasks`], [`top`]: one module per command that talks to the broker.
//! - [`assets`]: `completions` and the hidden `man`, generated from the same
//!   clap definitions (`cargo xtask cli-assets` writes them all).
//!
//! Every command that talks to the broker connects as client `ebctl-<pid>`
//! (kind `ebctl`) on a current-thread runtime, does its work, and closes the
//! connection.
#![forbid(unsafe_code)]

mod assets;
mod cli;
mod failure;
mod gather;
mod output;
mod publish;
mod reply;
mod request;
mod result;
mod stats;
mod subscribe;
mod tasks;
mod top;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use eventbus::{Client, ClientId, ClientOptions};

use cli::{Cli, Command};
use failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("ebctl: {failure}");
            failure.exit_code()
        }
    }
}

/// Validates the arguments, then runs the command against the broker.
fn run(cli: Cli) -> Result<(), Failure> {
    let socket = cli.socket();
    let id = cli.client_id()?;
    let broker = (socket.as_path(), &id);
    // Names are checked before connecting: a bad topic is a usage error
    // whether or not a broker is running.
    match cli.command {
        Command::Publish(args) => {
            let topic = cli::topic(&args.topic)?;
            let body = args.body.body()?;
            with_client(broker, async |client| {
                publish::run(client, &topic, body, &args).await
            })
        }
        Command::Subscribe(args) => {
            let filter = cli::filter(&args.filter)?;
            with_client(broker, async |client| {
                subscribe::run(client, &filter, &args).await
            })
        }
        Command::Request(args) => {
            let topic = cli::topic(&args.topic)?;
            let body = args.body.body()?;
            with_client(broker, async |client| {
                request::run(client, &topic, body, &args).await
            })
        }
        Command::Gather(args) => {
            let topic = cli::topic(&args.topic)?;
            let body = args.body.body()?;
            let group = args.group.as_deref().map(cli::group).transpose()?;
            with_client(broker, async |client| {
                gather::run(client, &topic, body, group, &args).await
            })
        }
        Command::Reply(args) => {
            let filter = cli::filter(&args.filter)?;
            let group = args.queue.as_deref().map(cli::group).transpose()?;
            let headers = cli::headers(&args.headers)?;
            with_client(broker, async |client| {
                reply::run(client, &filter, group, headers, &args).await
            })
        }
        Command::Result(args) => {
            with_client(broker, async |client| result::run(client, &args).await)
        }
        Command::Stats(args) => with_client(broker, async |client| stats::run(client, &args).await),
        Command::Top(args) => {
            if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(Failure::Usage(
                    "top needs a terminal; for a stream of snapshots use `ebctl stats --watch SECS`"
                        .to_owned(),
                ));
            }
            with_client(broker, async |client| top::run(client, &args).await)
        }
        Command::Tasks(args) => {
            let topic = cli::topic(&args.topic)?;
            let body = args.body.body()?;
            with_client(broker, async |client| {
                tasks::run(client, &topic, body, &args).await
            })
        }
        Command::Completions(args) => assets::completions(args.shell),
        Command::Man(args) => assets::man(&args.out),
    }
}

/// Connects to `socket` as `id`, runs `command`, then closes the connection.
fn with_client(
    (socket, id): (&Path, &ClientId),
    command: impl AsyncFnOnce(&Client) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::operational(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let options = ClientOptions::new(socket)
            .client_id(id.clone())
            .kind("ebctl");
        let client = Client::connect(options).await?;
        let result = command(&client).await;
        client.close().await;
        result
    })
}
