//! `weft-proxy`: the weft sidecar (`run`) and its iptables init (`init`).

mod init;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "weft-proxy", version, about = "weft sidecar proxy and iptables init")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar proxy.
    Run(Box<weft_proxy::run::cli::RunArgs>),
    /// Install (or print, or remove) the iptables redirection rules.
    Init(init::InitArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => weft_proxy::run::cli::run(*args),
        Command::Init(args) => init::run(args),
    }
}
