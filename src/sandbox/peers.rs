//! Which local process sent a request: the sandbox counts requests per client process id, so a test can see
//! that work really was spread over several worker processes (Spark executors, Dask workers).
//!
//! Linux only, from `/proc`: the client end of a loopback connection is a socket whose inode
//! `/proc/net/tcp` (or `tcp6`) names, held by the process whose `/proc/<pid>/fd` links to it. Looked up once
//! per connection, trying processes seen before first; `None` elsewhere or when it cannot tell.

use std::net::SocketAddr;

use parking_lot::Mutex;

/// Processes that held earlier connections, most recent first: a client opens many.
static RECENT: Mutex<Vec<u32>> = Mutex::new(Vec::new());
const RECENT_MAX: usize = 32;

/// The id of the local process holding the client end (`peer`) of a connection to `local`.
pub fn client_pid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    if !cfg!(target_os = "linux") || !peer.ip().is_loopback() {
        return None;
    }
    let inode = socket_inode(peer, local)?;
    let link = format!("socket:[{inode}]");
    let recent = RECENT.lock().clone();
    let found = recent
        .iter()
        .copied()
        .find(|&pid| holds(pid, &link))
        .or_else(|| {
            std::fs::read_dir("/proc")
                .ok()?
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| !recent.contains(pid))
                .find(|&pid| holds(pid, &link))
        })?;
    let mut r = RECENT.lock();
    r.retain(|&p| p != found);
    r.insert(0, found);
    r.truncate(RECENT_MAX);
    Some(found)
}

/// The inode of the socket whose local end is `peer` and remote end `local`.
fn socket_inode(peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    let table = if peer.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let text = std::fs::read_to_string(table).ok()?;
    let port = |field: &str| {
        field
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (l, r, inode) = (cols.get(1)?, cols.get(2)?, cols.get(9)?);
        (port(l)? == peer.port() && port(r)? == local.port())
            .then(|| inode.parse().ok())
            .flatten()
            .filter(|&i: &u64| i != 0)
    })
}

fn holds(pid: u32, link: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|e| e.ok())
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == link))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_as_the_client_of_a_loopback_connection() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let (_accepted, peer) = server.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(
            client_pid(peer, server.local_addr().unwrap()),
            Some(std::process::id())
        );
    }
}
