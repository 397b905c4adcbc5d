//! A fault-injecting TCP proxy for reliability tests of anything that talks
//! over TCP (the site agent and the hub, rsync, …), on loopback only.
//!
//! Between a client and `upstream` it can: cut every open connection every
//! N seconds (or on demand), stall (hold all bytes, connections open), go
//! offline (refuse new connections and cut the open ones), and throttle the
//! link to a shared bandwidth per direction. It counts the bytes it carried
//! each way, so a test can assert how much was sent over the wire.
//!
//! ```no_run
//! # async fn f(hub: std::net::SocketAddr) -> std::io::Result<()> {
//! use edusync_testkit::proxy::{FaultProxy, ProxyOptions};
//! let p = FaultProxy::start(hub, ProxyOptions { cut_every: Some(std::time::Duration::from_secs(3)), ..Default::default() }).await?;
//! // point the client at p.addr(); later: p.bytes_up(), p.cuts()
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the proxy misbehaves from the start (all can be changed later).
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Cut every open connection this often.
    pub cut_every: Option<Duration>,
    /// Bandwidth per direction, shared by all connections, in bytes/second.
    pub bytes_per_second: Option<u64>,
}

struct Pacer {
    rate: AtomicU64,
    next: Mutex<Instant>,
}

impl Pacer {
    /// How long to wait before `n` more bytes may pass.
    fn reserve(&self, n: usize) -> Duration {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return Duration::ZERO;
        }
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(n as f64 / rate as f64);
        start - now
    }
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    up: AtomicU64,
    down: AtomicU64,
    connections: AtomicU64,
    cuts: AtomicU64,
    stalled: AtomicBool,
    offline: AtomicBool,
    pace_up: Pacer,
    pace_down: Pacer,
    cut_tx: watch::Sender<u64>,
}

/// A running proxy; dropping it stops it (open connections end with it).
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut_all();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr, opts: ProxyOptions) -> std::io::Result<FaultProxy> {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), upstream, opts).await
    }

    /// Listens on `listen` (must be loopback) and forwards to `upstream`.
    pub async fn start_on(
        listen: SocketAddr,
        upstream: SocketAddr,
        opts: ProxyOptions,
    ) -> std::io::Result<FaultProxy> {
        assert!(
            listen.ip().is_loopback() && upstream.ip().is_loopback(),
            "the fault proxy only runs on loopback"
        );
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let rate = opts.bytes_per_second.unwrap_or(0);
        let (cut_tx, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            offline: AtomicBool::new(false),
            pace_up: Pacer {
                rate: AtomicU64::new(rate),
                next: Mutex::new(Instant::now()),
            },
            pace_down: Pacer {
                rate: AtomicU64::new(rate),
                next: Mutex::new(Instant::now()),
            },
            cut_tx,
        });
        let mut tasks = Vec::new();
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if s.offline.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                s.connections.fetch_add(1, Ordering::Relaxed);
                let s2 = s.clone();
                tokio::spawn(async move {
                    let up = *s2.upstream.lock().unwrap_or_else(|p| p.into_inner());
                    let Ok(server) = TcpStream::connect(up).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    pipe(s2, client, server).await;
                });
            }
        }));
        if let Some(every) = opts.cut_every {
            let s = shared.clone();
            tasks.push(tokio::spawn(async move {
                let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    t.tick().await;
                    s.cut();
                }
            }));
        }
        Ok(FaultProxy {
            addr,
            shared,
            tasks,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Bytes carried client → upstream.
    pub fn bytes_up(&self) -> u64 {
        self.shared.up.load(Ordering::Relaxed)
    }
    /// Bytes carried upstream → client.
    pub fn bytes_down(&self) -> u64 {
        self.shared.down.load(Ordering::Relaxed)
    }
    /// Connections accepted (not refused).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
    /// Times all connections were cut.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::Relaxed)
    }
    /// Cuts every open connection now.
    pub fn cut_all(&self) {
        self.shared.cut();
    }
    /// Holds all bytes (connections stay open) until unstalled.
    pub fn set_stalled(&self, on: bool) {
        self.shared.stalled.store(on, Ordering::SeqCst);
    }
    /// Refuses new connections and cuts the open ones (the link is down).
    pub fn set_offline(&self, on: bool) {
        self.shared.offline.store(on, Ordering::SeqCst);
        if on {
            self.shared.cut();
        }
    }
    /// Bandwidth per direction in bytes/second; `None` for unlimited.
    pub fn set_rate(&self, bytes_per_second: Option<u64>) {
        let r = bytes_per_second.unwrap_or(0);
        self.shared.pace_up.rate.store(r, Ordering::Relaxed);
        self.shared.pace_down.rate.store(r, Ordering::Relaxed);
    }
    /// Forwards new connections to another upstream (a restarted server).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        assert!(upstream.ip().is_loopback());
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = upstream;
    }
}

impl Shared {
    fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::Relaxed);
        self.cut_tx.send_modify(|g| *g += 1);
    }
}

async fn pipe(s: Arc<Shared>, client: TcpStream, server: TcpStream) {
    let mut cut = s.cut_tx.subscribe();
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = copy(s.clone(), cr, sw, true);
    let down = copy(s.clone(), sr, cw, false);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.changed() => {}
    }
    // Dropping the halves closes both sockets: the cut is abrupt.
}

async fn copy(
    s: Arc<Shared>,
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    upward: bool,
) {
    let (pacer, counter) = if upward {
        (&s.pace_up, &s.up)
    } else {
        (&s.pace_down, &s.down)
    };
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let rate = pacer.rate.load(Ordering::Relaxed);
        // Small reads on a slow link keep the pacing smooth.
        let max = if rate == 0 {
            buf.len()
        } else {
            (rate as usize / 20).clamp(512, buf.len())
        };
        let n = match r.read(&mut buf[..max]).await {
            Ok(0) | Err(_) => {
                let _ = w.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        while s.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let wait = pacer.reserve(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 4096];
                    while let Ok(n) = c.read(&mut b).await {
                        if n == 0 || c.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        a
    }

    #[tokio::test]
    async fn forwards_counts_cuts_and_throttles() {
        let echo = echo_server().await;
        let p = FaultProxy::start(echo, ProxyOptions::default())
            .await
            .unwrap();
        let mut c = TcpStream::connect(p.addr()).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hello");
        assert_eq!(p.bytes_up(), 5);
        p.cut_all();
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(2), c.read_to_end(&mut rest)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "connection was not cut"
        );

        p.set_rate(Some(20_000));
        let mut c = TcpStream::connect(p.addr()).await.unwrap();
        let t = Instant::now();
        c.write_all(&vec![7u8; 10_000]).await.unwrap();
        let mut back = vec![0u8; 10_000];
        c.read_exact(&mut back).await.unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(400),
            "not throttled: {:?}",
            t.elapsed()
        );

        p.set_offline(true);
        let mut c = TcpStream::connect(p.addr()).await.unwrap();
        let _ = c.write_all(b"x").await;
        let mut one = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(2), c.read(&mut one)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "offline proxy answered"
        );
    }
}
