//! `wax.v1.SweepService`.

use super::convert::{counts_to_wire, file_to_wire, status_of, sweep_to_wire};
use crate::auth::{Role, caller};
use crate::records::now_ms;
use crate::scheduler::{LiveEvent, Scheduler};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use wax_proto::v1;
use wax_proto::v1::sweep_service_server::SweepService;

pub struct SweepApi {
    sched: Arc<Scheduler>,
}

impl SweepApi {
    pub fn new(sched: Arc<Scheduler>) -> Self {
        SweepApi { sched }
    }
}

fn terminal(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled")
}

fn live_to_wire(e: LiveEvent) -> v1::SweepEvent {
    v1::SweepEvent {
        seq: e.record.seq,
        unix_ms: e.record.ts_ms,
        sweep_id: e.record.sweep_id,
        kind: e.record.kind,
        stage_id: e.record.stage_id.unwrap_or_default(),
        stage_kind: e.record.stage_kind.unwrap_or_default(),
        message: e.record.message,
        counts: Some(counts_to_wire(e.counts, 0)),
        state: e.state,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::SweepEvent, Status>> + Send>>;

#[tonic::async_trait]
impl SweepService for SweepApi {
    #[tracing::instrument(skip_all, fields(source = %req.get_ref().source_name))]
    async fn submit(
        &self,
        req: Request<v1::SubmitRequest>,
    ) -> Result<Response<v1::SubmitResponse>, Status> {
        let who = caller(&req, Role::Submit)?;
        let r = req.into_inner();
        let prepared =
            crate::submit::prepare(&r.manifest, &r.format, &r.source_name, &who.name, now_ms())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let trials = prepared.plan.trials.len() as u32;
        if r.dry_run {
            let stages = prepared.plan.stages.len() as u32;
            return Ok(Response::new(v1::SubmitResponse { trials, stages, ..Default::default() }));
        }
        let id = prepared.record.id.clone();
        let out = self.sched.submit(prepared.record, prepared.plan).await.map_err(status_of)?;
        tracing::info!(sweep = %id, trials, scheduled = out.scheduled, cached = out.cached, "sweep submitted");
        Ok(Response::new(v1::SubmitResponse {
            sweep_id: id,
            trials,
            stages: out.stages,
            cached: out.cached,
            scheduled: out.scheduled,
            shared: out.shared,
        }))
    }

    async fn get(&self, req: Request<v1::GetSweepRequest>) -> Result<Response<v1::Sweep>, Status> {
        caller(&req, Role::Read)?;
        let v = self.sched.sweep(&req.get_ref().sweep_id).map_err(status_of)?;
        Ok(Response::new(sweep_to_wire(v)))
    }

    async fn list(
        &self,
        req: Request<v1::ListSweepsRequest>,
    ) -> Result<Response<v1::ListSweepsResponse>, Status> {
        caller(&req, Role::Read)?;
        let limit = match req.get_ref().limit {
            0 => 100,
            n => n as usize,
        };
        let sweeps = self.sched.sweeps(limit).into_iter().map(sweep_to_wire).collect();
        Ok(Response::new(v1::ListSweepsResponse { sweeps }))
    }

    type WatchStream = EventStream;

    async fn watch(&self, req: Request<v1::WatchRequest>) -> Result<Response<EventStream>, Status> {
        caller(&req, Role::Read)?;
        let v1::WatchRequest { sweep_id, after_seq } = req.into_inner();
        // Subscribe before replaying, so nothing falls between the replay and the live feed.
        let mut live = self.sched.subscribe();
        self.sched.sweep(&sweep_id).map_err(status_of)?;
        let sched = self.sched.clone();
        let stream = async_stream::try_stream! {
            let mut last = after_seq;
            loop {
                // Replay what is stored after `last` (the start, or after the live feed lagged).
                // The sweep has ended if its last sweep-level event says so; events are stored
                // before they are published, so an end not yet stored will arrive live.
                let stored = sched.stored_events(&sweep_id, last, 100_000).await.map_err(status_of)?;
                let mut ended = false;
                for e in stored {
                    last = last.max(e.seq);
                    if e.stage_id.is_none() {
                        ended = matches!(e.kind.as_str(), "finished" | "cancelled");
                    }
                    yield v1::SweepEvent {
                        seq: e.seq,
                        unix_ms: e.ts_ms,
                        sweep_id: e.sweep_id,
                        kind: e.kind,
                        stage_id: e.stage_id.unwrap_or_default(),
                        stage_kind: e.stage_kind.unwrap_or_default(),
                        message: e.message,
                        counts: None,
                        state: String::new(),
                    };
                }
                if ended && terminal(&sched.sweep(&sweep_id).map_err(status_of)?.state) {
                    return;
                }
                // Follow the live feed; leaving this loop means it lagged behind and the stored
                // events must be replayed from `last`.
                loop {
                    match live.recv().await {
                        Ok(e) if e.record.sweep_id == sweep_id && e.record.seq > last => {
                            last = e.record.seq;
                            let done = terminal(&e.state);
                            yield live_to_wire(e);
                            if done {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cancel(
        &self,
        req: Request<v1::CancelRequest>,
    ) -> Result<Response<v1::CancelResponse>, Status> {
        let who = caller(&req, Role::Submit)?;
        let id = &req.get_ref().sweep_id;
        let cancelled = self.sched.cancel(id).await.map_err(status_of)?;
        tracing::info!(sweep = %id, by = %who.name, cancelled, "sweep cancelled");
        Ok(Response::new(v1::CancelResponse { cancelled }))
    }

    async fn retry_failed(
        &self,
        req: Request<v1::RetryFailedRequest>,
    ) -> Result<Response<v1::RetryFailedResponse>, Status> {
        caller(&req, Role::Submit)?;
        let requeued = self.sched.retry_failed(&req.get_ref().sweep_id).await.map_err(status_of)?;
        Ok(Response::new(v1::RetryFailedResponse { requeued }))
    }

    async fn stages(
        &self,
        req: Request<v1::StagesRequest>,
    ) -> Result<Response<v1::StagesResponse>, Status> {
        caller(&req, Role::Read)?;
        let (plan, stages) = self.sched.sweep_stages(&req.get_ref().sweep_id).map_err(status_of)?;
        let stages = stages
            .into_iter()
            .map(|(spec, status)| v1::StageInfo {
                stage_id: spec.id,
                kind: spec.kind,
                state: status.state.as_str().to_string(),
                attempt: status.epoch,
                committed_attempt: status.committed_attempt.unwrap_or(0),
                files: status.committed_files.iter().map(file_to_wire).collect(),
                last_error: status.last_error.unwrap_or_default(),
                inputs: spec.inputs,
                config_json: spec.config.to_string(),
            })
            .collect();
        Ok(Response::new(v1::StagesResponse { plan_json: plan.to_string(), stages }))
    }
}
