//! Connecting to a coordinator: TLS when the URL is `https://`, a bearer token on every call.

use crate::v1::sweep_service_client::SweepServiceClient;
use crate::v1::worker_service_client::WorkerServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type SweepClient = SweepServiceClient<InterceptedService<Channel, Bearer>>;
pub type WorkerClient = WorkerServiceClient<InterceptedService<Channel, Bearer>>;

/// A connection to a coordinator, from which service clients are made cheaply.
#[derive(Clone)]
pub struct Connection {
    channel: Channel,
    bearer: Bearer,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad coordinator URL {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("token contains characters not allowed in a header")]
    Token,
    #[error("cannot reach the coordinator at {url}: {source}")]
    Transport { url: String, source: tonic::transport::Error },
}

impl Connection {
    /// Connects to `url` (`http://host:port` or `https://host:port`). With `https`, the server
    /// certificate is checked against `ca_pem` when given (a private CA), else the system's
    /// web PKI roots are not consulted — give the CA.
    pub async fn connect(
        url: &str,
        ca_pem: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<Connection, ConnectError> {
        let bad = |why: String| ConnectError::Url { url: url.to_string(), why };
        let mut endpoint =
            Endpoint::from_shared(url.to_string()).map_err(|e| bad(e.to_string()))?;
        if url.starts_with("https://") {
            let host = url
                .trim_start_matches("https://")
                .split([':', '/'])
                .next()
                .unwrap_or_default()
                .to_string();
            let mut tls = ClientTlsConfig::new().domain_name(host);
            if let Some(ca) = ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        } else if !url.starts_with("http://") {
            return Err(bad("must start with http:// or https://".into()));
        }
        let endpoint =
            endpoint.connect_timeout(std::time::Duration::from_secs(10)).tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ConnectError::Transport { url: url.to_string(), source })?;
        let bearer = match token {
            Some(t) => {
                Bearer(Some(format!("Bearer {t}").parse().map_err(|_| ConnectError::Token)?))
            }
            None => Bearer(None),
        };
        Ok(Connection { channel, bearer })
    }

    pub fn sweeps(&self) -> SweepClient {
        SweepServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn workers(&self) -> WorkerClient {
        WorkerServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }
}
