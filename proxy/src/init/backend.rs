//! The system edge of `weft-proxy init`: choosing the iptables backend (nft or
//! legacy), running `*-save` / `*-restore`, and detecting whether the pod has IPv6.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::plan::Family;

/// Which iptables backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The one that already holds rules; nft when none does.
    Auto,
    /// `iptables-nft` (nf_tables kernel API).
    Nft,
    /// `iptables-legacy` (x_tables kernel API).
    Legacy,
}

/// A set of iptables binaries: `<prefix>{-save,-restore}` for both families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Name used in logs.
    pub name: &'static str,
    v4: &'static str,
    v6: &'static str,
}

/// Preference order, as linkerd's proxy-init: nft, the system default, legacy.
const CANDIDATES: [Backend; 3] = [
    Backend {
        name: "nft",
        v4: "iptables-nft",
        v6: "ip6tables-nft",
    },
    Backend {
        name: "default",
        v4: "iptables",
        v6: "ip6tables",
    },
    Backend {
        name: "legacy",
        v4: "iptables-legacy",
        v6: "ip6tables-legacy",
    },
];

impl Backend {
    fn binary(&self, family: Family, suffix: &str) -> String {
        let prefix = match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        };
        format!("{prefix}-{suffix}")
    }

    /// Whether this backend's save/restore binaries for `family` are installed.
    pub fn available(&self, family: Family) -> bool {
        find_binary(&self.binary(family, "save")).is_some()
            && find_binary(&self.binary(family, "restore")).is_some()
    }

    /// Runs `<family>-save -t nat` and returns its output.
    pub fn save_nat(&self, family: Family) -> anyhow::Result<String> {
        let bin = self.binary(family, "save");
        let out = Command::new(resolve(&bin)?)
            .args(["-t", "nat"])
            .output()
            .with_context(|| format!("running {bin}"))?;
        if !out.status.success() {
            bail!(
                "{bin} -t nat failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Feeds `input` to `<family>-restore --noflush`.
    pub fn restore(&self, family: Family, input: &str) -> anyhow::Result<()> {
        let bin = self.binary(family, "restore");
        let mut child = Command::new(resolve(&bin)?)
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .with_context(|| format!("writing rules to {bin}"))?;
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for {bin}"))?;
        if !out.status.success() {
            bail!(
                "{bin} --noflush failed ({}): {}\ninput was:\n{input}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Number of rules (`-A` lines) in all tables of this backend, `None` if it fails.
    fn rule_count(&self) -> Option<usize> {
        let out = Command::new(resolve(&self.binary(Family::V4, "save")).ok()?)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| count_rules(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// Counts the rules in `iptables-save` output.
pub fn count_rules(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

/// Picks the backend: the explicit choice, or (auto) the installed candidate that
/// already has the most rules, earliest in preference order on ties.
pub fn select(choice: BackendChoice) -> anyhow::Result<Backend> {
    let wanted: Vec<Backend> = match choice {
        BackendChoice::Nft => vec![CANDIDATES[0]],
        BackendChoice::Legacy => vec![CANDIDATES[2]],
        BackendChoice::Auto => CANDIDATES.to_vec(),
    };
    let mut best: Option<(Backend, usize)> = None;
    for b in wanted.into_iter().filter(|b| b.available(Family::V4)) {
        if choice != BackendChoice::Auto {
            return Ok(b);
        }
        let Some(count) = b.rule_count() else {
            tracing::debug!(backend = b.name, "backend present but not usable");
            continue;
        };
        tracing::debug!(backend = b.name, rules = count, "backend probed");
        if best.is_none_or(|(_, c)| count > c) {
            best = Some((b, count));
        }
    }
    best.map(|(b, _)| b)
        .with_context(|| format!("no usable iptables binaries found for backend {choice:?}"))
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn resolve(name: &str) -> anyhow::Result<PathBuf> {
    find_binary(name).with_context(|| format!("{name} not found in PATH"))
}

/// Whether `/proc/net/if_inet6` content lists a global-scope address on a
/// non-loopback interface (link-local addresses alone do not count).
pub fn has_global_ipv6(if_inet6: &str) -> bool {
    if_inet6.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 6 && f[5] != "lo" && f[3] == "00"
    })
}

/// Reads the current network namespace's IPv6 addresses (none if IPv6 is disabled).
pub fn pod_has_ipv6() -> bool {
    std::fs::read_to_string(Path::new("/proc/net/if_inet6")).is_ok_and(|s| has_global_ipv6(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_detection_ignores_loopback_and_link_local() {
        let lo_and_ll = "\
00000000000000000000000000000001 01 80 10 80       lo
fe800000000000000000000000000001 02 40 20 80     eth0
";
        assert!(!has_global_ipv6(lo_and_ll));
        assert!(has_global_ipv6(&format!(
            "{lo_and_ll}fd000000000000000000000000000005 02 40 00 80     eth0\n"
        )));
        assert!(!has_global_ipv6(""));
    }

    #[test]
    fn counts_rules() {
        assert_eq!(
            count_rules("*nat\n:A - [0:0]\n-A A -j RETURN\n-A B -j RETURN\nCOMMIT\n"),
            2
        );
    }
}
