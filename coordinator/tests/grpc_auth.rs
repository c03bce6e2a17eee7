//! Authentication, roles, TLS and protocol versions, over real connections.

mod support;

use support::*;
use tonic::Code;
use wax_coordinator::server::ServerConfig;
use wax_proto::client::Connection;
use wax_proto::v1;

const MANIFEST: &str =
    "[sweep]\nname = \"a\"\npipeline = \"single-stage\"\n[base]\nkind = \"sleep\"\n";

fn submit_req() -> v1::SubmitRequest {
    v1::SubmitRequest {
        manifest: MANIFEST.into(),
        format: "toml".into(),
        source_name: "a.toml".into(),
        dry_run: false,
    }
}

async fn code_of<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_authenticated_and_roles_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        start(&format!("sqlite:{}", dir.path().join("c.db").display()), fast_scheduler()).await;
    let url = format!("http://{}", server.addr);
    let anonymous = Connection::connect(&url, None, None).await.unwrap();
    let bogus = Connection::connect(&url, None, Some("not-a-token")).await.unwrap();
    let worker = connect(&server, WORKER).await;
    let reader = connect(&server, READ).await;
    let user = connect(&server, SUBMIT).await;

    assert_eq!(code_of(anonymous.sweeps().submit(submit_req()).await).await, Code::Unauthenticated);
    assert_eq!(
        code_of(bogus.sweeps().list(v1::ListSweepsRequest { limit: 1 }).await).await,
        Code::Unauthenticated
    );
    assert_eq!(
        code_of(anonymous.workers().lease(v1::LeaseRequest::default()).await).await,
        Code::Unauthenticated
    );
    // A worker token cannot submit, cancel or even read sweeps.
    let denied = worker.sweeps().submit(submit_req()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("needs `submit`"), "{denied}");
    let id = user.sweeps().submit(submit_req()).await.unwrap().into_inner().sweep_id;
    let cancel = v1::CancelRequest { sweep_id: id.clone() };
    assert_eq!(code_of(worker.sweeps().cancel(cancel.clone()).await).await, Code::PermissionDenied);
    assert_eq!(
        code_of(worker.sweeps().get(v1::GetSweepRequest { sweep_id: id.clone() }).await).await,
        Code::PermissionDenied
    );
    // A read token reads but cannot change anything; a user token cannot take work.
    assert_eq!(
        code_of(reader.sweeps().get(v1::GetSweepRequest { sweep_id: id.clone() }).await).await,
        Code::Ok
    );
    assert_eq!(code_of(reader.sweeps().cancel(cancel.clone()).await).await, Code::PermissionDenied);
    assert_eq!(code_of(reader.sweeps().submit(submit_req()).await).await, Code::PermissionDenied);
    let reg = v1::RegisterRequest {
        protocol_version: wax_proto::PROTOCOL_VERSION,
        worker_name: "x".into(),
        capabilities: Some(v1::Capabilities {
            resources: Some(v1::Resources::default()),
            stage_kinds: all_kinds(),
            ..Default::default()
        }),
    };
    assert_eq!(code_of(user.workers().register(reg.clone()).await).await, Code::PermissionDenied);
    // The submitter is recorded.
    let s =
        user.sweeps().get(v1::GetSweepRequest { sweep_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(s.submitted_by, "alice");
    assert_eq!(code_of(user.sweeps().cancel(cancel).await).await, Code::Ok);

    // Health answers without a token (for probes); reflection needs one.
    let channel =
        tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest { service: "wax.v1.SweepService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel);
    let ask = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let e = reflection.server_reflection_info(tokio_stream::iter(vec![ask])).await;
    let code = match e {
        Err(s) => s.code(),
        Ok(r) => r.into_inner().message().await.err().map_or(Code::Ok, |s| s.code()),
    };
    assert_eq!(code, Code::Unauthenticated);

    // A worker speaking another protocol version is refused with both versions named.
    let old = v1::RegisterRequest { protocol_version: wax_proto::PROTOCOL_VERSION + 1, ..reg };
    let e = worker.workers().register(old).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("protocol version mismatch"), "{e}");
    // An unknown worker id is told to register again.
    let e = worker
        .workers()
        .lease(v1::LeaseRequest { worker_id: "w-nobody".into(), wait_ms: 0 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Bad manifests are INVALID_ARGUMENT with the located message.
    let bad = v1::SubmitRequest { manifest: "[sweep]\nname = 3\n".into(), ..submit_req() };
    let e = user.sweeps().submit(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("a.toml:2:"), "{e}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_and_refuses_plain_or_untrusted_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ca.cert.pem()).unwrap();
    std::fs::write(&key, ca.signing_key.serialize_pem()).unwrap();
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".into(),
        store: format!("sqlite:{}", dir.path().join("c.db").display()),
        tls_cert: Some(cert),
        tls_key: Some(key),
        scheduler: fast_scheduler(),
        ..ServerConfig::default()
    };
    let server = wax_coordinator::server::start(&cfg, tokens()).await.unwrap();
    let port = server.addr.port();
    let https = Connection::connect(
        &format!("https://localhost:{port}"),
        Some(ca.cert.pem().into_bytes()),
        Some(SUBMIT),
    )
    .await
    .unwrap();
    let r = https.sweeps().submit(submit_req()).await.unwrap().into_inner();
    assert_eq!(r.trials, 1);
    // Plain HTTP/2 to a TLS port fails, as does TLS without trusting the CA.
    let plain = Connection::connect(&format!("http://localhost:{port}"), None, Some(SUBMIT)).await;
    if let Ok(c) = plain {
        assert!(c.sweeps().list(v1::ListSweepsRequest { limit: 1 }).await.is_err());
    }
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let untrusted = Connection::connect(
        &format!("https://localhost:{port}"),
        Some(other.cert.pem().into_bytes()),
        Some(SUBMIT),
    )
    .await;
    match untrusted {
        Err(_) => {}
        Ok(c) => assert!(c.sweeps().list(v1::ListSweepsRequest { limit: 1 }).await.is_err()),
    }
    server.shutdown().await.unwrap();
}
