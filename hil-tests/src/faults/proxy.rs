//! A TCP fault proxy the harness controls: it sits between a client (the
//! agent's uplink, the hub's object store client) and its server, and
//! injects what a bad network or a sick server does.
//!
//! Faults ([`Fault`]) apply to new and, where that is what the network
//! would do, to open connections:
//!
//! * `Pass`: bytes flow unchanged; stalled connections resume.
//! * `Latency(d)`: every chunk waits `d` in each direction.
//! * `Bandwidth(bps)`: each direction is paced to `bps` bytes per second.
//! * `Stall`: new connections are accepted, then nothing is forwarded; open
//!   connections stop forwarding too, without closing (a blackhole that
//!   completes the handshake).
//! * `Reset`: open connections are reset and new ones are reset at once.
//! * `Refuse`: the listener is closed (connection refused) and open
//!   connections are reset.
//! * `HttpError(code)`: open connections are closed; each new connection
//!   reads one HTTP request and answers `code` with `Connection: close`
//!   (for object stores: 500, 503).
//!
//! "No route" and "SYN blackhole" are not proxy states: see
//! [`super::PortBlock`], which blocks the proxy's port in netfilter.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does to traffic; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    Pass,
    Latency(Duration),
    Bandwidth(u64),
    Stall,
    Reset,
    Refuse,
    HttpError(u16),
}

#[derive(Debug)]
struct State {
    fault: Mutex<Fault>,
    /// Bumped when open connections must close.
    generation: AtomicU64,
    stop: AtomicBool,
    accepted: AtomicU64,
    forwarded_bytes: AtomicU64,
}

impl State {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running proxy on `127.0.0.1:<port>`; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            fault: Mutex::new(Fault::Pass),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            forwarded_bytes: AtomicU64::new(0),
        });
        let st = state.clone();
        let acceptor = std::thread::spawn(move || accept_loop(Some(listener), addr, upstream, st));
        FaultProxy {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the fault; see the module docs for open connections.
    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
        if matches!(fault, Fault::Reset | Fault::Refuse | Fault::HttpError(_)) {
            self.state.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn fault(&self) -> Fault {
        self.state.fault()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded_bytes(&self) -> u64 {
        self.state.forwarded_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    upstream: SocketAddr,
    state: Arc<State>,
) {
    while !state.stop.load(Ordering::SeqCst) {
        let fault = state.fault();
        if fault == Fault::Refuse {
            listener = None;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let Some(l) = listener.as_ref() else {
            // Back from Refuse: listen on the same port again.
            listener = TcpListener::bind(addr).ok();
            if let Some(l) = &listener {
                let _ = l.set_nonblocking(true);
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        };
        let _ = l.set_nonblocking(true);
        match l.accept() {
            Ok((client, _)) => {
                state.accepted.fetch_add(1, Ordering::Relaxed);
                let st = state.clone();
                std::thread::spawn(move || serve(client, upstream, fault, st));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve(client: TcpStream, upstream: SocketAddr, fault: Fault, state: Arc<State>) {
    let _ = client.set_nonblocking(false);
    match fault {
        Fault::Reset | Fault::Refuse => return reset(client),
        Fault::HttpError(code) => return answer_http_error(client, code),
        _ => {}
    }
    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
        return reset(client);
    };
    let generation = state.generation.load(Ordering::SeqCst);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let st = state.clone();
    let up = std::thread::spawn(move || pump(client, server, generation, st));
    pump(s2, c2, generation, state);
    let _ = up.join();
}

/// Copies `from` → `to`, applying the current fault to every chunk, until
/// either side closes or the proxy's generation moves on.
fn pump(mut from: TcpStream, mut to: TcpStream, generation: u64, state: Arc<State>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 16 * 1024];
    let broken = |st: &State| st.generation.load(Ordering::SeqCst) != generation;
    loop {
        if broken(&state) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        // Hold the chunk while stalled; give up if the link is cut.
        loop {
            match state.fault() {
                Fault::Stall if !broken(&state) => std::thread::sleep(Duration::from_millis(20)),
                Fault::Latency(d) => {
                    std::thread::sleep(d);
                    break;
                }
                Fault::Bandwidth(bps) => {
                    let secs = n as f64 / bps.max(1) as f64;
                    std::thread::sleep(Duration::from_secs_f64(secs));
                    break;
                }
                _ => break,
            }
        }
        if broken(&state) || to.write_all(&buf[..n]).is_err() {
            break;
        }
        state.forwarded_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    if broken(&state) {
        // The link broke: both ends see a reset, not a clean close.
        set_linger_zero(&from);
        set_linger_zero(&to);
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Closes with RST instead of FIN.
fn reset(stream: TcpStream) {
    set_linger_zero(&stream);
    drop(stream);
}

fn set_linger_zero(stream: &TcpStream) {
    // SO_LINGER with a zero timeout makes close() send RST.
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Reads one HTTP request (head and `Content-Length` body) and answers
/// `code`, closing the connection.
fn answer_http_error(mut client: TcpStream, code: u16) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = data.len() - head_end;
    while have < length {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
    }
    let body =
        format!("<Error><Code>Injected</Code><Message>fault proxy: {code}</Message></Error>");
    let _ = write!(
        client,
        "HTTP/1.1 {code} Injected Fault\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.shutdown(Shutdown::Both);
}
