//! Bearer tokens with roles.
//!
//! Every call must carry `authorization: Bearer <token>`. The coordinator knows only the
//! SHA-256 of each token (a leaked tokens file does not leak tokens) and the roles it grants:
//!
//! | role     | may                                                            |
//! |----------|----------------------------------------------------------------|
//! | `read`   | get, list and watch sweeps                                     |
//! | `submit` | everything `read` may, plus submit, cancel and retry sweeps    |
//! | `worker` | the worker service only (register, lease, heartbeat, complete) |
//! | `admin`  | everything                                                     |
//!
//! A worker token therefore cannot submit or cancel, and a user token cannot take work.
//!
//! Tokens file (TOML):
//! ```toml
//! [[token]]
//! name = "alice"
//! sha256 = "…"          # `wax token new` prints it; or `token = "…"` in plain text
//! roles = ["submit"]
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tonic::{Request, Status};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Submit,
    Worker,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }
}

/// The holder of a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether the roles allow `needed` (admin allows all; submit includes read).
    pub fn can(&self, needed: Role) -> bool {
        self.roles.iter().any(|&r| {
            r == needed || r == Role::Admin || (r == Role::Submit && needed == Role::Read)
        })
    }

    /// `Ok` if allowed, else PERMISSION_DENIED naming what was missing.
    pub fn require(&self, needed: Role) -> Result<(), Status> {
        if self.can(needed) {
            Ok(())
        } else {
            let have: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
            Err(Status::permission_denied(format!(
                "token `{}` has roles [{}]; this call needs `{}`",
                self.name,
                have.join(", "),
                needed.as_str()
            )))
        }
    }
}

/// Known tokens, by SHA-256.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Principal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: Option<String>,
    token: Option<String>,
    roles: Vec<Role>,
}

/// A tokens file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// SHA-256 of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Reads a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| TokensError::Invalid { path: shown.clone(), message: e.to_string() })?;
        Tokens::parse(&text, &shown)
    }

    /// Parses tokens-file text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Tokens, TokensError> {
        let bad = |message: String| TokensError::Invalid { path: origin.to_string(), message };
        let file: TokensFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut tokens = Tokens::default();
        for (i, e) in file.token.into_iter().enumerate() {
            let hash = match (&e.sha256, &e.token) {
                (Some(h), None) => {
                    let bytes = hex::decode(h.trim())
                        .map_err(|_| bad(format!("token[{i}].sha256: not hex")))?;
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map_err(|_| bad(format!("token[{i}].sha256: need 64 hex digits")))?
                }
                (None, Some(t)) => token_hash(t),
                _ => {
                    return Err(bad(format!(
                        "token[{i}] (`{}`): give exactly one of `sha256` or `token`",
                        e.name
                    )));
                }
            };
            if e.roles.is_empty() {
                return Err(bad(format!("token[{i}] (`{}`): no roles", e.name)));
            }
            if tokens
                .by_hash
                .insert(hash, Principal { name: e.name.clone(), roles: e.roles })
                .is_some()
            {
                return Err(bad(format!(
                    "token[{i}] (`{}`): the same token appears twice",
                    e.name
                )));
            }
        }
        Ok(tokens)
    }

    /// Adds a token in memory (embedded mode, tests).
    pub fn insert(&mut self, token: &str, name: &str, roles: &[Role]) {
        self.by_hash
            .insert(token_hash(token), Principal { name: name.to_string(), roles: roles.to_vec() });
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// The principal of a bearer token.
    pub fn check(&self, token: &str) -> Option<&Principal> {
        self.by_hash.get(&token_hash(token))
    }
}

/// A new random token (256 bits, hex) from the operating system's generator.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!("wax_{}", hex::encode(bytes)))
}

/// The tonic interceptor: authenticates every call and attaches the [`Principal`].
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<Tokens>,
}

impl Authenticator {
    pub fn new(tokens: Arc<Tokens>) -> Self {
        Authenticator { tokens }
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>`"))?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        let principal = self
            .tokens
            .check(token.trim())
            .ok_or_else(|| Status::unauthenticated("unknown token"))?
            .clone();
        req.extensions_mut().insert(principal);
        Ok(req)
    }
}

/// The authenticated caller of a request, with `needed` checked.
pub fn caller<T>(req: &Request<T>, needed: Role) -> Result<Principal, Status> {
    let p = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("not authenticated"))?;
    p.require(needed)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_imply_what_they_should_and_no_more() {
        let p = |roles: &[Role]| Principal { name: "x".into(), roles: roles.to_vec() };
        assert!(p(&[Role::Submit]).can(Role::Read));
        assert!(!p(&[Role::Submit]).can(Role::Worker));
        assert!(!p(&[Role::Worker]).can(Role::Submit));
        assert!(!p(&[Role::Worker]).can(Role::Read));
        assert!(!p(&[Role::Read]).can(Role::Submit));
        for r in [Role::Read, Role::Submit, Role::Worker, Role::Admin] {
            assert!(p(&[Role::Admin]).can(r));
        }
        let e = p(&[Role::Worker]).require(Role::Submit).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("needs `submit`"));
    }

    #[test]
    fn tokens_file_hashes_and_errors() {
        let hash = hex::encode(token_hash("secret-1"));
        let text = format!(
            "[[token]]\nname = \"alice\"\nsha256 = \"{hash}\"\nroles = [\"submit\"]\n\n\
             [[token]]\nname = \"w\"\ntoken = \"secret-2\"\nroles = [\"worker\"]\n"
        );
        let t = Tokens::parse(&text, "tokens.toml").unwrap();
        assert_eq!(t.check("secret-1").unwrap().name, "alice");
        assert_eq!(t.check("secret-2").unwrap().roles, vec![Role::Worker]);
        assert!(t.check("secret-3").is_none());
        let e =
            Tokens::parse("[[token]]\nname = \"a\"\nroles = [\"read\"]\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("exactly one of `sha256` or `token`"), "{e}");
        let e =
            Tokens::parse("[[token]]\nname = \"a\"\ntoken = \"x\"\nroles = [\"root\"]\n", "t.toml")
                .unwrap_err();
        assert!(e.to_string().starts_with("t.toml: ") && e.to_string().contains("root"), "{e}");
        let tok = new_token().unwrap();
        assert_eq!(tok.len(), 4 + 64);
        assert_ne!(tok, new_token().unwrap());
    }
}
