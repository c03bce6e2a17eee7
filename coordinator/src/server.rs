//! The coordinator process: store + scheduler + authenticated gRPC services (+ health and
//! reflection), over TLS when a certificate is configured.

use crate::auth::{Authenticator, Tokens};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::service::{SweepApi, WorkerApi};
use crate::store::{self, Store};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use wax_proto::v1::sweep_service_server::SweepServiceServer;
use wax_proto::v1::worker_service_server::WorkerServiceServer;

/// How to run the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: String,
    /// `sqlite:PATH` (default `sqlite:wax-coordinator.db`) or `postgres://…`.
    pub store: String,
    /// Tokens file (see `auth`). Required: the coordinator refuses to serve without tokens.
    pub tokens: Option<PathBuf>,
    /// PEM certificate chain and key: serve TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub scheduler: SchedulerConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:7070".into(),
            store: "sqlite:wax-coordinator.db".into(),
            tokens: None,
            tls_cert: None,
            tls_key: None,
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// Why the coordinator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("scheduler: {0}")]
    Scheduler(#[from] crate::scheduler::SchedError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the store failed; stopping so that a restart reconciles: {0}")]
    Fatal(String),
}

/// A running coordinator.
pub struct Running {
    pub addr: SocketAddr,
    pub scheduler: Arc<Scheduler>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Stops accepting calls and waits for the server to end.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.done.await.map_err(|e| ServeError::Config(format!("server task: {e}")))?
    }

    /// Serves until `stop` resolves (then shuts down cleanly) or the server ends on its own
    /// (a fatal store error, returned as `Err`).
    pub async fn run_until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServeError> {
        tokio::select! {
            _ = stop => self.shutdown().await,
            r = &mut self.done => r.map_err(|e| ServeError::Config(format!("server task: {e}")))?,
        }
    }
}

/// Opens the store, restores the scheduler, binds and starts serving in the background.
pub async fn start(cfg: &ServerConfig, tokens: Tokens) -> Result<Running, ServeError> {
    if tokens.is_empty() {
        return Err(ServeError::Config(
            "no tokens: every call must be authenticated. Create one with `wax token new --role submit` \
             and pass the file with --tokens"
                .into(),
        ));
    }
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| ServeError::Config(format!("{}: {e}", p.display())))
            };
            Some(ServerTlsConfig::new().identity(Identity::from_pem(read(c)?, read(k)?)))
        }
        (None, None) => None,
        _ => return Err(ServeError::Config("tls_cert and tls_key go together".into())),
    };
    let store: Arc<dyn Store> = store::open(&cfg.store).await?;
    tracing::info!(store = %store.describe(), "store opened");
    let scheduler = Scheduler::start(store, cfg.scheduler.clone()).await?;
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|source| ServeError::Listen { addr: cfg.listen.clone(), source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Listen { addr: cfg.listen.clone(), source })?;

    let auth = Authenticator::new(Arc::new(tokens));
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<SweepServiceServer<SweepApi>>().await;
    health_reporter.set_serving::<WorkerServiceServer<WorkerApi>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(wax_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Config(format!("reflection: {e}")))?;

    let mut builder = Server::builder().tcp_nodelay(true);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        // Health stays open (it says only "serving", and kubelet probes carry no token);
        // everything else, reflection included, needs a valid token.
        .add_service(health)
        .add_service(tonic::service::interceptor::InterceptedService::new(reflection, auth.clone()))
        .add_service(SweepServiceServer::with_interceptor(
            SweepApi::new(scheduler.clone()),
            auth.clone(),
        ))
        .add_service(WorkerServiceServer::with_interceptor(
            WorkerApi::new(scheduler.clone()),
            auth,
        ));

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut fatal = scheduler.fatal();
    let done = tokio::spawn(async move {
        let (fatal_tx, fatal_rx) = oneshot::channel::<String>();
        tokio::spawn(async move {
            while fatal.changed().await.is_ok() {
                if let Some(why) = fatal.borrow().clone() {
                    let _ = fatal_tx.send(why);
                    return;
                }
            }
        });
        let mut fatal_reason = None;
        let shutdown = async {
            tokio::select! {
                _ = stop_rx => {}
                why = fatal_rx => { fatal_reason = why.ok(); }
            }
        };
        router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown).await?;
        match fatal_reason {
            Some(why) => Err(ServeError::Fatal(why)),
            None => Ok(()),
        }
    });
    tracing::info!(%addr, "coordinator listening");
    Ok(Running { addr, scheduler, stop: Some(stop_tx), done })
}
