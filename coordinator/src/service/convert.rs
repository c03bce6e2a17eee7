//! Records ↔ wire messages, and scheduler errors → gRPC statuses.

use crate::records::{ArtifactFile, Resources};
use crate::scheduler::{Counts, OpError, SchedError, SweepView};
use wax_proto::v1;

pub fn resources_to_wire(r: Resources) -> v1::Resources {
    v1::Resources {
        gpus: r.gpus,
        gpu_memory_bytes: r.gpu_memory_bytes,
        cpu_millis: r.cpu_millis,
        memory_bytes: r.memory_bytes,
    }
}

pub fn resources_from_wire(r: Option<&v1::Resources>) -> Resources {
    r.map_or_else(Resources::default, |r| Resources {
        gpus: r.gpus,
        gpu_memory_bytes: r.gpu_memory_bytes,
        cpu_millis: r.cpu_millis,
        memory_bytes: r.memory_bytes,
    })
}

pub fn file_to_wire(f: &ArtifactFile) -> v1::ArtifactFile {
    v1::ArtifactFile { path: f.path.clone(), size: f.size, sha256: f.sha256.clone() }
}

pub fn file_from_wire(f: v1::ArtifactFile) -> ArtifactFile {
    ArtifactFile { path: f.path, size: f.size, sha256: f.sha256 }
}

pub fn counts_to_wire(c: Counts, cached: u32) -> v1::StageCounts {
    v1::StageCounts {
        total: c.total(),
        pending: c.pending,
        ready: c.ready,
        leased: c.leased,
        succeeded: c.succeeded,
        failed: c.failed,
        cancelled: c.cancelled,
        cached,
    }
}

pub fn sweep_to_wire(v: SweepView) -> v1::Sweep {
    v1::Sweep {
        id: v.record.id,
        name: v.record.name,
        state: v.state,
        created_unix_ms: v.record.created_ms,
        trials: v.record.trials,
        counts: Some(counts_to_wire(v.counts, v.record.cached)),
        stalled_reasons: v.stalled_reasons,
        submitted_by: v.record.submitted_by,
        priority: v.record.priority,
        max_concurrent: v.record.max_concurrent,
        running: v
            .running
            .into_iter()
            .map(|r| {
                let (progress, message, metrics) = match r.progress {
                    Some(p) => (p.fraction, p.message, p.metrics.into_iter().collect()),
                    None => (-1.0, String::new(), Default::default()),
                };
                v1::RunningStage {
                    stage_id: r.stage_id,
                    kind: r.kind,
                    worker_id: r.worker,
                    attempt: r.attempt,
                    progress,
                    message,
                    metrics,
                    lease_expires_unix_ms: r.lease_expires_ms,
                }
            })
            .collect(),
        failures: v
            .failures
            .into_iter()
            .map(|(stage_id, kind, error)| v1::StageFailure { stage_id, kind, error })
            .collect(),
    }
}

pub fn status_of(e: SchedError) -> tonic::Status {
    match e {
        SchedError::Op(OpError::NotFound(m)) => tonic::Status::not_found(m),
        SchedError::Op(OpError::Stale(m)) => tonic::Status::failed_precondition(m),
        SchedError::Op(OpError::Invalid(m)) => tonic::Status::invalid_argument(m),
        SchedError::Store(m) => {
            tonic::Status::unavailable(format!("coordinator store failed, restarting: {m}"))
        }
    }
}
