//! Whether a loopback TCP port is listened on by this process, read from
//! Linux's `/proc/net/tcp` (the listening socket's inode) and
//! `/proc/self/fd` (the sockets this process holds).
//!
//! The embedded rumqttd binds ports the gate chose and released a moment
//! before (see [`super::embedded`]). Another process that bound one in
//! between would answer the gate's connections and receive its password
//! and every message it forwards; rumqttd would have failed to bind, and
//! the broker would not work. Checking who listens turns that into a clear
//! start-up error.

use std::collections::HashSet;
use std::net::SocketAddrV4;

/// `Ok(true)` when a socket of this process listens on `addr`;
/// `Ok(false)` when none does (another process, or nobody); an error when
/// `/proc` cannot be read (not Linux).
pub(crate) fn listened_by_this_process(addr: SocketAddrV4) -> std::io::Result<bool> {
    let inodes = listening_inodes(&std::fs::read_to_string("/proc/net/tcp")?, addr);
    if inodes.is_empty() {
        return Ok(false);
    }
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let inode = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        if inode.is_some_and(|i| inodes.contains(&i)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The inodes of the sockets listening on `addr` in a `/proc/net/tcp`
/// table. The kernel prints the address as the four bytes in network order
/// read as one native integer (`%08X`), then the port (`%04X`); state `0A`
/// is LISTEN; the inode is the tenth column.
fn listening_inodes(table: &str, addr: SocketAddrV4) -> HashSet<u64> {
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(addr.ip().octets()),
        addr.port()
    );
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (address, state, inode) = (cols.get(1)?, cols.get(3)?, cols.get(9)?);
            (address.eq_ignore_ascii_case(&local) && *state == "0A")
                .then(|| inode.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::{BufRead, BufReader};
    use std::net::{Ipv4Addr, SocketAddr, TcpListener};
    use std::process::{Command, Stdio};

    use super::*;

    fn v4(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn the_table_is_read_as_the_kernel_prints_it() {
        let loopback = format!("{:08X}", u32::from_ne_bytes([127, 0, 0, 1]));
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  0: {loopback}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
             \x20  1: {loopback}:1F90 {loopback}:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 20 4 30 10 -1\n\
             \x20  2: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n\
             garbage\n"
        );
        // Only the listener on 127.0.0.1:8080, not a connection from that
        // port nor a listener on another address or port.
        assert_eq!(listening_inodes(&table, v4(8080)), HashSet::from([4242]));
        assert!(listening_inodes(&table, v4(8081)).is_empty());
        assert!(listening_inodes(&table, v4(8079)).is_empty());
    }

    #[test]
    fn a_listener_of_this_process_is_told_from_another_process_and_from_none() {
        let mine = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let SocketAddr::V4(addr) = mine.local_addr().unwrap() else {
            panic!("bound v4")
        };
        assert!(listened_by_this_process(addr).unwrap());
        drop(mine);
        assert!(!listened_by_this_process(addr).unwrap(), "nobody listens");

        // Another process listens: a loopback port the gate would wrongly
        // trust if it only checked that something answers.
        let mut other = Command::new("python3")
            .args([
                "-c",
                "import socket, sys, time\n\
                 s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
                 print(s.getsockname()[1], flush=True); time.sleep(30)",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (the test suite installs it)");
        let mut line = String::new();
        BufReader::new(other.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().unwrap();
        let theirs = listened_by_this_process(v4(port));
        other.kill().unwrap();
        other.wait().unwrap();
        assert!(!theirs.unwrap(), "another process's listener");
    }
}
