//! A network namespace joined to this one by a veth pair, for cutting one
//! host off from NATS and healing it (the partition nemesis). Needs root
//! and iproute2 (`ip netns`), as CI has.
//!
//! Addresses, in a /29 of its own:
//!
//! | address | side | what listens or sends there |
//! |---|---|---|
//! | `.1` | here | the clients of the namespace's HTTP door |
//! | `.2` | namespace | the host's connections to NATS |
//! | `.3` | namespace | the host's HTTP door |
//! | `.5` | here | `nats-server` ([`NetNs::nats_ip`]); hosts here reach it too |
//!
//! [`cut`](NetNs::cut) drops every packet between `.2` and `.5`, both
//! ways (a blackhole route on each side), and nothing else: the host keeps
//! its HTTP door, so a test sees what it answers while cut off, and TCP
//! connections stay open, silent, as in a real partition. [`heal`](NetNs::heal)
//! removes both routes. The namespace and the pair go on drop.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

pub struct NetNs {
    pub name: String,
    /// The veth end on this side.
    link: String,
    /// `10.231.<x>.<y>`: the /29's first address.
    base: [u8; 4],
    cut: bool,
}

impl NetNs {
    /// Creates the namespace, the pair and the addresses.
    ///
    /// # Panics
    ///
    /// If `ip` fails (not root, no iproute2), with its error.
    pub fn create() -> NetNs {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 32, "at most 32 namespaces per test process");
        let pid = std::process::id();
        let name = format!("aether-{pid}-{n}");
        // Interface names have at most 15 bytes.
        let tag = format!("{:x}{n:02x}", pid % 0x10_0000);
        let (link, peer) = (format!("ae{tag}h"), format!("ae{tag}n"));
        let base = [10, 231, (pid % 256) as u8, n * 8];
        let at = |last: u8| format!("{}.{}.{}.{}/29", base[0], base[1], base[2], base[3] + last);
        // A namespace left by a run that died under the same pid.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &link]).output();
        ip(&["netns", "add", &name]);
        let netns = NetNs { name, link: link.clone(), base, cut: false };
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &netns.name]);
        ip(&["addr", "add", &at(1), "dev", &link]);
        ip(&["addr", "add", &at(5), "dev", &link]);
        ip(&["link", "set", &link, "up"]);
        netns.inside(&["addr", "add", &at(2), "dev", &peer]);
        netns.inside(&["addr", "add", &at(3), "dev", &peer]);
        netns.inside(&["link", "set", &peer, "up"]);
        netns.inside(&["link", "set", "lo", "up"]);
        netns
    }

    fn addr(&self, last: u8) -> Ipv4Addr {
        let [a, b, c, d] = self.base;
        Ipv4Addr::new(a, b, c, d + last)
    }

    /// Where `nats-server` listens, reachable from both sides.
    pub fn nats_ip(&self) -> IpAddr {
        IpAddr::V4(self.addr(5))
    }

    /// Where the host inside serves HTTP.
    pub fn door_ip(&self) -> IpAddr {
        IpAddr::V4(self.addr(3))
    }

    /// Cuts the host inside off from NATS, both ways.
    pub fn cut(&mut self) {
        self.inside(&["route", "add", "blackhole", &format!("{}/32", self.addr(5))]);
        ip(&["route", "add", "blackhole", &format!("{}/32", self.addr(2))]);
        self.cut = true;
    }

    /// Undoes [`cut`](Self::cut).
    pub fn heal(&mut self) {
        self.inside(&["route", "del", "blackhole", &format!("{}/32", self.addr(5))]);
        ip(&["route", "del", "blackhole", &format!("{}/32", self.addr(2))]);
        self.cut = false;
    }

    fn inside(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if self.cut {
            let _ = Command::new("ip").args(["route", "del", "blackhole", &format!("{}/32", self.addr(2))]).output();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        let _ = Command::new("ip").args(["link", "del", &self.link]).output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("`ip` (iproute2) does not run: {e}; the partition nemesis needs it, and root"));
    assert!(
        out.status.success(),
        "ip {}: {}; the partition nemesis needs root and iproute2 (`ip netns`)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
