//! `wax.v1.WorkerService`.

use super::convert::{
    file_from_wire, file_to_wire, resources_from_wire, resources_to_wire, status_of,
};
use crate::auth::{Role, caller};
use crate::records::{WorkerRecord, now_ms};
use crate::scheduler::{FailureKind, Progress, Scheduler};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};
use wax_proto::v1;
use wax_proto::v1::worker_service_server::WorkerService;

pub struct WorkerApi {
    sched: Arc<Scheduler>,
}

impl WorkerApi {
    pub fn new(sched: Arc<Scheduler>) -> Self {
        WorkerApi { sched }
    }
}

fn worker_id(name: &str) -> String {
    let nonce = format!("{name}/{:?}/{}", std::time::SystemTime::now(), std::process::id());
    format!("w-{}", hex::encode(&Sha256::digest(nonce.as_bytes())[..6]))
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    #[tracing::instrument(skip_all, fields(worker = %req.get_ref().worker_name))]
    async fn register(
        &self,
        req: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        caller(&req, Role::Worker)?;
        let r = req.into_inner();
        if !wax_proto::compatible(r.protocol_version) {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: worker speaks {}, coordinator speaks {}; upgrade the older side",
                r.protocol_version,
                wax_proto::PROTOCOL_VERSION
            )));
        }
        let caps = r.capabilities.unwrap_or_default();
        if caps.resources.is_none() {
            return Err(Status::invalid_argument(
                "capabilities.resources is missing: a worker must say what it has (GPUs, memory, CPU)",
            ));
        }
        if caps.stage_kinds.is_empty() {
            return Err(Status::invalid_argument("a worker must offer at least one stage kind"));
        }
        let now = now_ms();
        let record = WorkerRecord {
            id: worker_id(&r.worker_name),
            name: r.worker_name,
            resources: resources_from_wire(caps.resources.as_ref()),
            kinds: caps.stage_kinds.into_iter().map(|k| (k.kind, k.schema_version)).collect(),
            labels: caps.labels.into_iter().collect(),
            max_concurrent_tasks: caps.max_concurrent_tasks.max(1),
            registered_ms: now,
            last_seen_ms: now,
        };
        let id = record.id.clone();
        self.sched.register(record).await.map_err(status_of)?;
        tracing::info!(worker = %id, "worker registered");
        let cfg = self.sched.config();
        Ok(Response::new(v1::RegisterResponse {
            worker_id: id,
            protocol_version: wax_proto::PROTOCOL_VERSION,
            lease_ttl_ms: cfg.lease_ttl.as_millis() as u64,
            heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u64,
        }))
    }

    async fn lease(
        &self,
        req: Request<v1::LeaseRequest>,
    ) -> Result<Response<v1::LeaseResponse>, Status> {
        caller(&req, Role::Worker)?;
        let r = req.into_inner();
        let granted = self
            .sched
            .lease(&r.worker_id, Duration::from_millis(r.wait_ms))
            .await
            .map_err(status_of)?;
        let task = granted.map(|g| v1::Task {
            stage_id: g.spec.id.clone(),
            kind: g.spec.kind.clone(),
            config_json: g.spec.config.to_string(),
            inputs: g
                .inputs
                .iter()
                .map(|(spec, attempt, files)| v1::InputArtifact {
                    stage_id: spec.id.clone(),
                    kind: spec.kind.clone(),
                    attempt: *attempt,
                    files: files.iter().map(file_to_wire).collect(),
                })
                .collect(),
            epoch: g.epoch,
            lease_expires_unix_ms: g.expires_ms,
            resources: Some(resources_to_wire(g.spec.resources)),
            schema_version: g.spec.schema_version,
        });
        Ok(Response::new(v1::LeaseResponse { task }))
    }

    async fn heartbeat(
        &self,
        req: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        caller(&req, Role::Worker)?;
        let r = req.into_inner();
        let report = Progress {
            fraction: r.progress,
            message: r.message,
            metrics: r.metrics.into_iter().collect(),
        };
        let (cancel, expires) = self
            .sched
            .heartbeat(&r.worker_id, &r.stage_id, r.epoch, Some(report))
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::HeartbeatResponse { cancel, lease_expires_unix_ms: expires }))
    }

    async fn complete(
        &self,
        req: Request<v1::CompleteRequest>,
    ) -> Result<Response<v1::CompleteResponse>, Status> {
        caller(&req, Role::Worker)?;
        let r = req.into_inner();
        let files = r.files.into_iter().map(file_from_wire).collect();
        let (duplicate, attempt) = self
            .sched
            .complete(&r.worker_id, &r.stage_id, r.epoch, files)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::CompleteResponse { duplicate, canonical_attempt: attempt }))
    }

    async fn fail(
        &self,
        req: Request<v1::FailRequest>,
    ) -> Result<Response<v1::FailResponse>, Status> {
        caller(&req, Role::Worker)?;
        let r = req.into_inner();
        let kind = match v1::FailureKind::try_from(r.kind) {
            Ok(v1::FailureKind::Infrastructure) => FailureKind::Infrastructure,
            Ok(v1::FailureKind::Released) => FailureKind::Released,
            _ => FailureKind::Stage,
        };
        let retry_at = self
            .sched
            .fail(&r.worker_id, &r.stage_id, r.epoch, kind, r.retryable, &r.reason)
            .await
            .map_err(status_of)?;
        Ok(Response::new(v1::FailResponse {
            will_retry: retry_at.is_some(),
            retry_at_unix_ms: retry_at.unwrap_or(0),
        }))
    }
}
