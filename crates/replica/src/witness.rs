//! The witness: a voter without data. With two data nodes it is the third vote that lets
//! the survivor of a failure keep (or take) the primary role, and that stops the two from
//! both serving when only the link between them fails. It runs an acceptor only
//! ([`crate::quorum::acceptor`]): it never proposes and holds no lease.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::arbiter::NodeName;
use crate::net::{Purpose, Router};
use crate::quorum::acceptor::{StoreError, Voter};

/// Why the witness stopped.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("cluster name {0:?}: 1 to {max} bytes", max = crate::net::MAX_CLUSTER_NAME_LEN)]
    Cluster(String),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("voter state: {0}")]
    Store(#[from] StoreError),
}

/// Serves as voter `me` of `cluster` on `listen`, keeping its state under `state_dir`,
/// until `shutdown` completes.
pub async fn run_witness(
    cluster: &str,
    me: NodeName,
    listen: SocketAddr,
    state_dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WitnessError> {
    if cluster.is_empty() || cluster.len() > crate::net::MAX_CLUSTER_NAME_LEN {
        return Err(WitnessError::Cluster(cluster.to_owned()));
    }
    let voter = tokio::task::spawn_blocking(move || Voter::open(&state_dir))
        .await
        .map_err(|e| WitnessError::Listen {
            addr: listen,
            source: std::io::Error::other(e.to_string()),
        })??;
    let (router, accept) = Router::bind(cluster, me.clone(), listen)
        .await
        .map_err(|source| WitnessError::Listen {
            addr: listen,
            source,
        })?;
    // Dropping this future (an aborted task) stops the listener and the voter too.
    let _serve = AbortOnDrop(tokio::spawn(crate::quorum::serve(
        router.register(Purpose::Vote),
        Arc::new(voter),
    )));
    let _accept = AbortOnDrop(accept);
    tracing::info!(
        "witness {me} of cluster {cluster} on {}",
        router.local_addr()
    );
    shutdown.await;
    tracing::info!("witness {me} stopped");
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
