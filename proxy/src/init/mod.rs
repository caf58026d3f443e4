//! `weft-proxy init`: plans and installs the iptables rules that redirect a pod's
//! TCP traffic through the sidecar.
//!
//! The rules are computed by the pure [`plan::plan`], rendered as
//! `iptables-restore --noflush` input relative to what the `nat` table already holds
//! ([`restore`]), and applied with the detected backend ([`backend`]). Re-running
//! replaces the weft chains and keeps exactly one jump into each; `--cleanup` removes
//! every weft chain and jump; `--dry-run` prints the rules and touches nothing.

mod backend;
mod plan;
mod restore;
mod spec;

use anyhow::{Context, bail};

use backend::{Backend, BackendChoice};
use plan::{CHAINS, Config, Family, Table};
use restore::{parse_nat, render_cleanup, render_install};
use spec::{CidrList, PortList};

/// Whether to install IPv6 rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Ipv6Mode {
    /// When the pod has a global IPv6 address.
    Auto,
    /// Always.
    On,
    /// Never.
    Off,
}

/// Arguments of `weft-proxy init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Port of the sidecar's inbound listener.
    #[arg(long, default_value_t = 15006)]
    inbound_port: u16,
    /// Port of the sidecar's outbound listener.
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// The sidecar's admin port (never redirected).
    #[arg(long, default_value_t = 15020)]
    admin_port: u16,
    /// UID of the sidecar process (its own traffic is not redirected).
    #[arg(long, default_value_t = 2102)]
    proxy_uid: u32,
    /// Inbound ports not redirected, e.g. `8081,9000-9100`.
    #[arg(long, default_value = "")]
    skip_inbound_ports: PortList,
    /// Outbound destination ports not redirected.
    #[arg(long, default_value = "")]
    skip_outbound_ports: PortList,
    /// Outbound destination networks not redirected, e.g. `198.19.0.0/16,fd00::/8`.
    #[arg(long, default_value = "")]
    skip_outbound_cidrs: CidrList,
    /// Install IPv6 (ip6tables) rules too.
    #[arg(long, value_enum, default_value_t = Ipv6Mode::Auto)]
    ipv6: Ipv6Mode,
    /// iptables backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Print the rules instead of installing them.
    #[arg(long, conflicts_with = "cleanup")]
    dry_run: bool,
    /// Remove every weft chain and jump instead of installing.
    #[arg(long)]
    cleanup: bool,
}

impl InitArgs {
    fn config(&self, ipv6: bool) -> Config {
        Config {
            inbound_port: self.inbound_port,
            outbound_port: self.outbound_port,
            admin_port: self.admin_port,
            proxy_uid: self.proxy_uid,
            skip_inbound_ports: self.skip_inbound_ports.0.clone(),
            skip_outbound_ports: self.skip_outbound_ports.0.clone(),
            skip_outbound_cidrs: self.skip_outbound_cidrs.0.clone(),
            ipv6,
        }
    }
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// Runs the init subcommand.
pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let ipv6 = match args.ipv6 {
        Ipv6Mode::On => true,
        Ipv6Mode::Off => false,
        Ipv6Mode::Auto => backend::pod_has_ipv6(),
    };
    let plan = plan::plan(&args.config(ipv6));
    let tables: Vec<&Table> = std::iter::once(&plan.v4).chain(plan.v6.as_ref()).collect();
    if args.dry_run {
        for t in tables {
            let state = restore::NatState::default();
            print!(
                "# {} rules for iptables-restore --noflush\n{}",
                family_name(t.family),
                render_install(t, &state)
            );
        }
        return Ok(());
    }
    let backend = backend::select(args.backend)?;
    tracing::info!(
        backend = backend.name,
        ipv6,
        cleanup = args.cleanup,
        "applying iptables rules"
    );
    if args.cleanup {
        cleanup(backend, Family::V4)?;
        if backend.available(Family::V6)
            && let Err(e) = cleanup(backend, Family::V6)
        {
            if ipv6 {
                return Err(e);
            }
            tracing::warn!(error = %e, "ipv6 cleanup skipped");
        }
        return Ok(());
    }
    for t in tables {
        install(backend, t)?;
    }
    Ok(())
}

fn install(backend: Backend, table: &Table) -> anyhow::Result<()> {
    let family = table.family;
    let before = parse_nat(&backend.save_nat(family)?);
    backend.restore(family, &render_install(table, &before))?;
    let after = parse_nat(&backend.save_nat(family)?);
    let missing: Vec<&str> = CHAINS
        .iter()
        .copied()
        .filter(|c| !after.chains.contains(*c))
        .collect();
    if !missing.is_empty() || after.jumps.len() != table.jumps.len() {
        bail!(
            "{} rules not in place after restore: missing chains {missing:?}, jumps {:?}",
            family_name(family),
            after.jumps
        );
    }
    tracing::info!(
        family = family_name(family),
        rules = table.rules.len(),
        replaced = !before.is_empty(),
        "redirection installed"
    );
    Ok(())
}

fn cleanup(backend: Backend, family: Family) -> anyhow::Result<()> {
    let state = parse_nat(&backend.save_nat(family)?);
    let Some(input) = render_cleanup(&state) else {
        tracing::info!(family = family_name(family), "nothing to clean up");
        return Ok(());
    };
    backend
        .restore(family, &input)
        .with_context(|| format!("{} cleanup", family_name(family)))?;
    tracing::info!(
        family = family_name(family),
        chains = state.chains.len(),
        "weft rules removed"
    );
    Ok(())
}
