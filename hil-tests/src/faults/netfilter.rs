//! Link faults the proxy cannot fake, made with netfilter (`iptables`) on
//! one loopback port: "no route to host" (ICMP host unreachable, so
//! `connect` fails at once with `EHOSTUNREACH`) and a SYN blackhole (the
//! packets vanish, so `connect` hangs until the client's timeout).
//!
//! The rule is removed when the [`PortBlock`] is dropped, also when a test
//! fails. Needs root and `iptables` (Debian's package; `scripts/test.sh`
//! installs it).

use std::process::Command;

/// How the port is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// `REJECT --reject-with icmp-host-unreachable`: no route to host.
    NoRoute,
    /// `DROP`: packets vanish; connects time out.
    Blackhole,
}

/// An iptables rule on `127.0.0.1:<port>`, live until dropped.
#[derive(Debug)]
pub struct PortBlock {
    args: Vec<String>,
}

impl PortBlock {
    /// Adds the rule; panics with the reason when iptables refuses.
    pub fn new(port: u16, block: Block) -> PortBlock {
        let mut args: Vec<String> = [
            "INPUT",
            "-i",
            "lo",
            "-p",
            "tcp",
            "-d",
            "127.0.0.1",
            "--dport",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(port.to_string());
        args.push("-j".to_owned());
        match block {
            Block::NoRoute => {
                args.extend(["REJECT", "--reject-with", "icmp-host-unreachable"].map(str::to_owned))
            }
            Block::Blackhole => args.push("DROP".to_owned()),
        }
        iptables("-I", &args).unwrap_or_else(|e| panic!("cannot block port {port}: {e}"));
        PortBlock { args }
    }
}

impl Drop for PortBlock {
    fn drop(&mut self) {
        if let Err(e) = iptables("-D", &self.args) {
            eprintln!(
                "WARNING: could not remove the iptables rule {:?}: {e}",
                self.args
            );
        }
    }
}

/// True when this process may add iptables rules.
pub fn available() -> bool {
    Command::new(iptables_path())
        .args(["-w", "-L", "INPUT", "-n"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn iptables_path() -> std::path::PathBuf {
    crate::find_tool("iptables").unwrap_or_else(|| "iptables".into())
}

fn iptables(op: &str, args: &[String]) -> Result<(), String> {
    let out = Command::new(iptables_path())
        .arg("-w")
        .arg(op)
        .args(args)
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
