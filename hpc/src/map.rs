//! The cluster map in openMosix setpe format.
//!
//! Each non-comment line reads `ID HOST COUNT`: node ids `ID..ID+COUNT-1` are the
//! consecutive IPv4 addresses starting at `HOST`. `#` starts a comment. As an
//! extension for labs that run several agents on one address, `HOST` may be
//! `ADDR:PORT`; the port is the agent's TCP RPC port and the UDP gossip port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use crate::model::NodeId;
use crate::paths::AGENT_PORT;

/// The most map lines setpe accepted.
pub const MAX_ENTRIES: usize = 256;

/// One node of the cluster map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapNode {
    /// openMosix node id.
    pub id: NodeId,
    /// Host as written in the map (the first host of a range keeps its name).
    pub host: String,
    /// Resolved address and port of the node's agent.
    pub addr: SocketAddr,
}

/// Errors reading or parsing a cluster map.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The map file could not be read.
    #[error("cannot read cluster map {path}: {source}")]
    Io {
        /// The map file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("cluster map line {line}: {message}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// A parsed cluster map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMap {
    /// Every node, sorted by id.
    pub nodes: Vec<MapNode>,
}

impl ClusterMap {
    /// Reads and parses a map file.
    pub fn load(path: &Path) -> Result<Self, MapError> {
        let text = std::fs::read_to_string(path).map_err(|source| MapError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses map text.
    pub fn parse(text: &str) -> Result<Self, MapError> {
        let mut nodes: Vec<MapNode> = Vec::new();
        let mut lines = 0usize;
        for (idx, raw) in text.lines().enumerate() {
            let line_no = idx + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            lines += 1;
            if lines > MAX_ENTRIES {
                return Err(syntax(line_no, format!("more than {MAX_ENTRIES} entries")));
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, host, rest @ ..] = fields.as_slice() else {
                return Err(syntax(line_no, "expected `ID HOST COUNT`".into()));
            };
            let count = match rest {
                [] => 1,
                [c] => c
                    .parse::<u32>()
                    .map_err(|_| syntax(line_no, format!("count `{c}` is not a number")))?,
                _ => return Err(syntax(line_no, "too many fields".into())),
            };
            let id: NodeId = id
                .parse()
                .ok()
                .filter(|n| (1..=65_535).contains(n))
                .ok_or_else(|| syntax(line_no, format!("node id `{id}` is not in 1..65535")))?;
            if count == 0 || id + count - 1 > 65_535 {
                return Err(syntax(line_no, format!("count {count} is out of range")));
            }
            let first = resolve(host).map_err(|m| syntax(line_no, m))?;
            for k in 0..count {
                let addr = offset(first, k).ok_or_else(|| {
                    syntax(
                        line_no,
                        "a range of more than one node needs an IPv4 address".into(),
                    )
                })?;
                let nid = id + k;
                if nodes.iter().any(|n| n.id == nid) {
                    return Err(syntax(line_no, format!("node {nid} appears twice")));
                }
                let host = if k == 0 {
                    host.to_string()
                } else {
                    addr.ip().to_string()
                };
                nodes.push(MapNode {
                    id: nid,
                    host,
                    addr,
                });
            }
        }
        nodes.sort_by_key(|n| n.id);
        Ok(Self { nodes })
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> Option<&MapNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The node whose address (or host name) matches `needle`.
    pub fn find(&self, needle: &str) -> Option<&MapNode> {
        self.nodes.iter().find(|n| {
            n.host == needle || n.addr.ip().to_string() == needle || n.addr.to_string() == needle
        })
    }

    /// Renders the map in setpe format.
    pub fn to_text(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{} {} 1\n", n.id, n.addr))
            .collect()
    }
}

fn syntax(line: usize, message: String) -> MapError {
    MapError::Syntax { line, message }
}

/// Resolves `host` or `host:port` to a socket address (default port [`AGENT_PORT`]).
pub fn resolve(host: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = host.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, AGENT_PORT));
    }
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:{AGENT_PORT}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{host}` has no address"))
}

fn offset(first: SocketAddr, k: u32) -> Option<SocketAddr> {
    if k == 0 {
        return Some(first);
    }
    match first.ip() {
        IpAddr::V4(v4) => {
            let n = u32::from(v4).checked_add(k)?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(n)), first.port()))
        }
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_comments_and_ports() {
        let map = ClusterMap::parse(
            "# lab\n1 10.0.0.1 3 # three nodes\n\n10 127.0.0.1:7001 1\n11 127.0.0.1:7002\n",
        )
        .unwrap();
        let ids: Vec<_> = map.nodes.iter().map(|n| n.id).collect();
        assert_eq!(ids, [1, 2, 3, 10, 11]);
        assert_eq!(map.node(3).unwrap().addr, "10.0.0.3:4660".parse().unwrap());
        assert_eq!(map.node(10).unwrap().addr.port(), 7001);
        assert_eq!(map.find("10.0.0.2").unwrap().id, 2);
    }

    #[test]
    fn rejects_bad_lines() {
        for bad in ["0 10.0.0.1 1", "1 10.0.0.1 x", "1", "1 10.0.0.1 1 9"] {
            assert!(ClusterMap::parse(bad).is_err(), "{bad}");
        }
        let dup = ClusterMap::parse("1 10.0.0.1 2\n2 10.0.0.9 1").unwrap_err();
        assert!(dup.to_string().contains("node 2 appears twice"), "{dup}");
    }
}
