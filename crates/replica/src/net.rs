//! One TCP listener per node for every cluster connection, and the hello that opens each
//! connection and says what it is for.
//!
//! Every connection starts with a [`Hello`] frame from the connecting side. The [`Router`]
//! checks the cluster name and the addressee, answers with a [`KIND_WELCOME`] frame (or a
//! [`KIND_REFUSED`] frame with the reason, then closes), and hands the stream to the handler
//! registered for the purpose: the replication link of one device, or the voter. Kinds
//! `0x0001..=0x00ff` belong to this module, `0x0100..=0x01ff` to replication and
//! `0x0200..=0x02ff` to the quorum.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esos_common::sync::LockExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::arbiter::NodeName;
use crate::frame::{self, FrameError, Reader, Writer};

pub const KIND_HELLO: u16 = 0x0001;
pub const KIND_WELCOME: u16 = 0x0002;
pub const KIND_REFUSED: u16 = 0x0003;

/// Longest cluster name (bytes).
pub const MAX_CLUSTER_NAME_LEN: usize = 63;
/// How long a new connection may take to say hello (and a connect to be welcomed).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections accepted but not yet past their hello; more are closed at once.
pub const MAX_PENDING_HELLOS: usize = 64;
/// Connections queued for one handler that it has not taken yet.
pub const HANDLER_QUEUE: usize = 8;

/// What a connection is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The replication link of the named device.
    Replica(String),
    /// Quorum traffic to this node's voter.
    Vote,
}

/// The first frame of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub cluster: String,
    pub from: NodeName,
    pub to: NodeName,
    pub purpose: Purpose,
}

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str(&self.cluster)
            .str(self.from.as_str())
            .str(self.to.as_str());
        match &self.purpose {
            Purpose::Replica(dev) => w.u8(1).str(dev),
            Purpose::Vote => w.u8(2),
        };
        w.finish()
    }

    pub fn decode(payload: &[u8]) -> Result<Hello, FrameError> {
        let mut r = Reader::new(payload);
        let cluster = r.str("hello.cluster")?;
        let node = |s: String, field| {
            NodeName::new(&s).ok_or(FrameError::Invalid {
                field,
                reason: format!("{s:?} is not a node name"),
            })
        };
        let from = node(r.str("hello.from")?, "hello.from")?;
        let to = node(r.str("hello.to")?, "hello.to")?;
        let purpose = match r.u8("hello.purpose")? {
            1 => Purpose::Replica(r.str("hello.device")?),
            2 => Purpose::Vote,
            p => {
                return Err(FrameError::Invalid {
                    field: "hello.purpose",
                    reason: format!("unknown purpose {p}"),
                });
            }
        };
        r.end("hello")?;
        Ok(Hello {
            cluster,
            from,
            to,
            purpose,
        })
    }
}

/// A connection past its hello, with who sent it.
#[derive(Debug)]
pub struct Incoming {
    pub hello: Hello,
    pub stream: TcpStream,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} did not welcome us within {HELLO_TIMEOUT:?}")]
    Timeout { addr: SocketAddr },
    #[error("{addr} refused: {reason}")]
    Refused { addr: SocketAddr, reason: String },
    #[error("{addr}: {source}")]
    Frame {
        addr: SocketAddr,
        source: FrameError,
    },
}

/// Opens a connection to `addr` for `hello.purpose` and waits for the welcome.
pub async fn connect(addr: SocketAddr, hello: &Hello) -> Result<TcpStream, ConnectError> {
    let work = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Io { addr, source })?;
        let _ = s.set_nodelay(true);
        let fr = |source| ConnectError::Frame { addr, source };
        frame::write_frame(&mut s, KIND_HELLO, 0, &[&hello.encode()])
            .await
            .map_err(fr)?;
        match frame::read_frame(&mut s).await.map_err(fr)? {
            Some(f) if f.kind == KIND_WELCOME => Ok(s),
            Some(f) if f.kind == KIND_REFUSED => Err(ConnectError::Refused {
                addr,
                reason: String::from_utf8_lossy(&f.payload).into_owned(),
            }),
            Some(f) => Err(fr(FrameError::UnknownKind(f.kind))),
            None => Err(ConnectError::Refused {
                addr,
                reason: "closed the connection".into(),
            }),
        }
    };
    tokio::time::timeout(HELLO_TIMEOUT, work)
        .await
        .unwrap_or(Err(ConnectError::Timeout { addr }))
}

/// Accepts cluster connections for node `me` of cluster `cluster` and routes them.
#[derive(Debug)]
pub struct Router {
    cluster: String,
    me: NodeName,
    local_addr: SocketAddr,
    handlers: Mutex<HashMap<Purpose, mpsc::Sender<Incoming>>>,
    pending: tokio::sync::Semaphore,
}

impl Router {
    /// Binds `addr` and starts accepting on the current tokio runtime. Dropping every
    /// `Arc<Router>` does not stop the accept loop: abort the returned handle.
    pub async fn bind(
        cluster: &str,
        me: NodeName,
        addr: SocketAddr,
    ) -> std::io::Result<(Arc<Router>, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(addr).await?;
        let router = Arc::new(Router {
            cluster: cluster.to_owned(),
            me,
            local_addr: listener.local_addr()?,
            handlers: Mutex::new(HashMap::new()),
            pending: tokio::sync::Semaphore::new(MAX_PENDING_HELLOS),
        });
        let r = router.clone();
        let task = tokio::spawn(async move { r.accept_loop(listener).await });
        Ok((router, task))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn me(&self) -> &NodeName {
        &self.me
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Registers the handler of `purpose`: connections for it arrive on the returned
    /// receiver. Registering again replaces the previous handler.
    pub fn register(&self, purpose: Purpose) -> mpsc::Receiver<Incoming> {
        let (tx, rx) = mpsc::channel(HANDLER_QUEUE);
        self.handlers.locked().insert(purpose, tx);
        rx
    }

    /// Removes the handler of `purpose`; its connections are refused from now on.
    pub fn unregister(&self, purpose: &Purpose) {
        self.handlers.locked().remove(purpose);
    }

    /// A hello from this node to `to` for `purpose`.
    pub fn hello(&self, to: NodeName, purpose: Purpose) -> Hello {
        Hello {
            cluster: self.cluster.clone(),
            from: self.me.clone(),
            to,
            purpose,
        }
    }

    async fn accept_loop(self: Arc<Router>, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("cluster listener: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = self.pending.try_acquire() else {
                tracing::warn!("cluster listener: {peer}: too many connections saying hello");
                continue;
            };
            permit.forget();
            let r = self.clone();
            tokio::spawn(async move {
                let res = tokio::time::timeout(HELLO_TIMEOUT, r.greet(stream)).await;
                r.pending.add_permits(1);
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::info!("cluster connection from {peer}: {e}"),
                    Err(_) => tracing::info!("cluster connection from {peer}: no hello in time"),
                }
            });
        }
    }

    async fn greet(&self, mut stream: TcpStream) -> Result<(), FrameError> {
        let _ = stream.set_nodelay(true);
        let Some(f) = frame::read_frame(&mut stream).await? else {
            return Ok(());
        };
        if f.kind != KIND_HELLO {
            return Err(FrameError::UnknownKind(f.kind));
        }
        let hello = Hello::decode(&f.payload)?;
        let refuse = if hello.cluster != self.cluster {
            Some(format!(
                "this node is in cluster {:?}, not {:?}",
                self.cluster, hello.cluster
            ))
        } else if hello.to != self.me {
            Some(format!("this node is {}, not {}", self.me, hello.to))
        } else {
            None
        };
        let handler = self.handlers.locked().get(&hello.purpose).cloned();
        let refuse = refuse.or_else(|| match (&handler, &hello.purpose) {
            (None, Purpose::Replica(d)) => Some(format!("no replicated device {d:?} here")),
            (None, Purpose::Vote) => Some("no voter here".into()),
            _ => None,
        });
        if let Some(reason) = refuse {
            frame::write_frame(&mut stream, KIND_REFUSED, 0, &[reason.as_bytes()]).await?;
            return Err(FrameError::Invalid {
                field: "hello",
                reason,
            });
        }
        frame::write_frame(&mut stream, KIND_WELCOME, 0, &[]).await?;
        if let Some(h) = handler {
            // A handler that is gone or full loses the connection; the peer reconnects.
            let _ = h.try_send(Incoming { hello, stream });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    #[test]
    fn hello_round_trips() {
        for purpose in [Purpose::Vote, Purpose::Replica("db".into())] {
            let h = Hello {
                cluster: "pair".into(),
                from: n("a"),
                to: n("b"),
                purpose,
            };
            assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
        }
        assert!(Hello::decode(b"\0\x01x").is_err());
    }

    #[tokio::test]
    async fn routes_by_purpose_and_refuses_strangers() {
        let (router, task) = Router::bind("pair", n("b"), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = router.local_addr();
        let mut votes = router.register(Purpose::Vote);
        let hello = |cluster: &str, to: &str, purpose| Hello {
            cluster: cluster.into(),
            from: n("a"),
            to: n(to),
            purpose,
        };
        connect(addr, &hello("pair", "b", Purpose::Vote))
            .await
            .unwrap();
        let inc = votes.recv().await.unwrap();
        assert_eq!(inc.hello.from, n("a"));
        for (h, why) in [
            (hello("other", "b", Purpose::Vote), "cluster"),
            (hello("pair", "c", Purpose::Vote), "this node is b"),
            (
                hello("pair", "b", Purpose::Replica("x".into())),
                "no replicated",
            ),
        ] {
            match connect(addr, &h).await {
                Err(ConnectError::Refused { reason, .. }) => {
                    assert!(reason.contains(why), "{reason}")
                }
                other => panic!("{h:?}: {other:?}"),
            }
        }
        task.abort();
    }
}
