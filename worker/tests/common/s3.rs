//! Settings that reach a throwaway moto server (`wax_tests::s3::TestS3`).
#![allow(dead_code)]

use wax_tests::s3::{ACCESS_KEY, SECRET_KEY, TestS3};
use wax_worker::artifacts::S3Settings;

pub fn settings(s3: &TestS3) -> S3Settings {
    S3Settings {
        endpoint: Some(s3.endpoint().to_string()),
        region: Some("us-east-1".into()),
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
        session_token: None,
        allow_http: true,
    }
}

/// The project's Python (`.wax/python`, made by `make bootstrap`).
pub fn python() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.wax/python")
}
