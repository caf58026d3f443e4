//! `weft-proxy`: the weft sidecar (`run`), the ingress gateway (`gateway`) and
//! the sidecar's iptables init (`init`).

mod init;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "weft-proxy",
    version,
    about = "weft sidecar proxy, ingress gateway and iptables init"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar proxy.
    Run(Box<weft_proxy::run::cli::RunArgs>),
    /// Run the ingress gateway: the listeners of the config's `gateway` section.
    Gateway(Box<weft_proxy::run::cli::GatewayArgs>),
    /// Install (or print, or remove) the iptables redirection rules.
    Init(init::InitArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => weft_proxy::run::cli::run(*args),
        Command::Gateway(args) => weft_proxy::run::cli::gateway(*args),
        Command::Init(args) => init::run(args),
    }
}
