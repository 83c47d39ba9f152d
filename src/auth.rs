//! Token verification, shared by the Socket.io handshake and the HTTP `/api/` routes. A JWT is
//! checked once (signature, `exp`/`nbf` with leeway, `sub`), then the organization, role and
//! allowed sites are read from configurable claims into a [`Principal`]. Errors are the exact
//! messages the product's clients already know; they say nothing about the server's internals.
//!
//! Over 400 lines: One boundary (token → principal) with its claim checks and their error messages
//! in one place: split, the checks would be read apart from the errors they produce.

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod ring_jwt;

/// Makes ring jsonwebtoken's provider for the process (also done by
/// [`Authenticator::from_config`]). A process that signs or checks a token with jsonwebtoken
/// before then (a test) calls it first, or jsonwebtoken picks its own.
pub use ring_jwt::install as install_jwt_provider;

use crate::core::duration::duration_str;
use crate::core::secret::Secret;

/// `[auth] mode`: JWTs (production) or no authentication (development only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Jwt,
    None,
}

/// The `[auth]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub jwt_secret_file: Option<PathBuf>,
    pub jwt_public_key_file: Option<PathBuf>,
    #[serde(skip)]
    pub jwt_secret: Option<Secret>,
    pub org_claim: String,
    pub role_claim: String,
    pub sites_claim: String,
    #[serde(with = "duration_str")]
    pub leeway: Duration,
    /// `mode = "none"` only: the organization every socket belongs to, and its role.
    pub dev_org: Option<String>,
    pub dev_role: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Jwt,
            jwt_secret_file: None,
            jwt_public_key_file: None,
            jwt_secret: None,
            org_claim: "org_id".into(),
            role_claim: "role".into(),
            sites_claim: "site_ids".into(),
            leeway: Duration::from_secs(30),
            dev_org: None,
            dev_role: "owner".into(),
        }
    }
}

impl AuthConfig {
    /// Checks the section on its own (the secret is already read): `Err((key under auth., message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        match self.mode {
            AuthMode::Jwt => {
                let keys = [
                    self.jwt_secret.is_some(),
                    self.jwt_public_key_file.is_some(),
                ];
                if keys.iter().filter(|k| **k).count() != 1 {
                    return Err((
                        String::new(),
                        "jwt mode needs exactly one of jwt_secret_file (or SENSORCAST_AUTH__JWT_SECRET) and jwt_public_key_file".into(),
                    ));
                }
                if self
                    .jwt_secret
                    .as_ref()
                    .is_some_and(|s| s.expose().len() < 16)
                {
                    return Err((
                        "jwt_secret_file".into(),
                        "secret is shorter than 16 bytes".into(),
                    ));
                }
            }
            AuthMode::None => {
                if self.dev_org.as_deref().unwrap_or("").is_empty() {
                    return Err((
                        "dev_org".into(),
                        "mode = \"none\" needs the organization every socket belongs to".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Who a socket or request is. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: Arc<str>,
    pub org: Arc<str>,
    pub role: Arc<str>,
    /// `None`: every site of the organization. `Some`: only these.
    pub sites: Option<Arc<HashSet<String>>>,
    /// Token expiry, epoch seconds.
    pub expires_at: Option<u64>,
}

impl Principal {
    pub fn may_see_site(&self, site: &str) -> bool {
        self.sites.as_ref().is_none_or(|s| s.contains(site))
    }

    pub fn is_admin(&self) -> bool {
        matches!(&*self.role, "owner" | "admin")
    }
}

/// The rejection messages, word for word what `connect_error` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Authentication token required")]
    Missing,
    #[error("Token expired")]
    Expired,
    #[error("Invalid token claims")]
    Claims,
    #[error("Invalid token signature")]
    Signature,
    #[error("Invalid or malformed token")]
    Malformed,
    #[error("User has no organization access")]
    NoOrganization,
}

impl AuthError {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "token_missing",
            AuthError::Expired => "token_expired",
            AuthError::Claims => "token_claims",
            AuthError::Signature => "token_signature",
            AuthError::Malformed => "token_malformed",
            AuthError::NoOrganization => "no_organization",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

pub struct Authenticator {
    mode: AuthMode,
    key: Option<(DecodingKey, Validation)>,
    org_claim: String,
    role_claim: String,
    sites_claim: String,
    dev: Option<Principal>,
}

impl Authenticator {
    pub fn from_config(cfg: &AuthConfig) -> Result<Authenticator, KeyError> {
        ring_jwt::install();
        let mut auth = Authenticator {
            mode: cfg.mode,
            key: None,
            org_claim: cfg.org_claim.clone(),
            role_claim: cfg.role_claim.clone(),
            sites_claim: cfg.sites_claim.clone(),
            dev: None,
        };
        match cfg.mode {
            AuthMode::None => {
                auth.dev = Some(Principal {
                    subject: "dev".into(),
                    org: cfg.dev_org.clone().unwrap_or_default().into(),
                    role: cfg.dev_role.as_str().into(),
                    sites: None,
                    expires_at: None,
                });
            }
            AuthMode::Jwt => {
                let (key, algs) = if let Some(secret) = &cfg.jwt_secret {
                    (
                        DecodingKey::from_secret(secret.expose().as_bytes()),
                        vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
                    )
                } else if let Some(path) = &cfg.jwt_public_key_file {
                    let pem = std::fs::read(path)
                        .map_err(|e| KeyError(format!("cannot read {}: {e}", path.display())))?;
                    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                        match ring_jwt::rsa_bits(&k) {
                            Some(bits) if ring_jwt::RSA_BITS.contains(&bits) => {}
                            Some(0) | None => {
                                return Err(KeyError(format!(
                                    "{}: not an RSA public key (a private key?)",
                                    path.display()
                                )))
                            }
                            Some(bits) => {
                                return Err(KeyError(format!(
                                    "{}: an RSA key of {bits} bits; 2048 to 8192 are accepted",
                                    path.display()
                                )))
                            }
                        }
                        (
                            k,
                            vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
                        )
                    } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                        (k, vec![Algorithm::ES256, Algorithm::ES384])
                    } else {
                        return Err(KeyError(format!(
                            "{}: not an RSA or EC public key in PEM form",
                            path.display()
                        )));
                    }
                } else {
                    return Err(KeyError("no JWT key configured".into()));
                };
                let mut v = Validation::new(algs[0]);
                v.algorithms = algs;
                v.leeway = cfg.leeway.as_secs();
                // Off by default in jsonwebtoken: a token not valid yet is refused (with the
                // same leeway as `exp`), and so is an `nbf` that is not a number.
                v.validate_nbf = true;
                v.validate_aud = false;
                v.set_required_spec_claims(&["sub"]);
                auth.key = Some((key, v));
            }
        }
        Ok(auth)
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Verifies a token (absent in `none` mode is fine: every caller is the dev principal).
    pub fn verify(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        if let Some(dev) = &self.dev {
            return Ok(dev.clone());
        }
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let (key, validation) = self.key.as_ref().ok_or(AuthError::Malformed)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map_err(|e| classify(e.kind()))?;
        self.principal(&data.claims)
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            _ => return Err(AuthError::Claims),
        };
        let org = match claims.get(&self.org_claim) {
            None | Some(Value::Null) => return Err(AuthError::NoOrganization),
            Some(Value::String(s)) if s.is_empty() => return Err(AuthError::NoOrganization),
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(AuthError::Claims),
        };
        let role = match claims.get(&self.role_claim) {
            None | Some(Value::Null) => "viewer",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(AuthError::Claims),
        };
        let sites = match claims.get(&self.sites_claim) {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(Arc::new(
                a.iter()
                    .map(|v| v.as_str().map(str::to_string).ok_or(AuthError::Claims))
                    .collect::<Result<HashSet<_>, _>>()?,
            )),
            Some(_) => return Err(AuthError::Claims),
        };
        let expires_at = match claims.get("exp") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or(AuthError::Claims)?),
        };
        Ok(Principal {
            subject: subject.into(),
            org: org.into(),
            role: role.into(),
            sites,
            expires_at,
        })
    }
}

fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => AuthError::Signature,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::ImmatureSignature
        | ErrorKind::InvalidIssuer
        | ErrorKind::InvalidAudience
        | ErrorKind::InvalidSubject => AuthError::Claims,
        _ => AuthError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "test-secret-at-least-16-bytes";

    fn auth() -> Authenticator {
        let cfg = AuthConfig {
            jwt_secret: Some(Secret::new(SECRET)),
            ..AuthConfig::default()
        };
        Authenticator::from_config(&cfg).unwrap()
    }

    /// Runs the `openssl` command in `dir`; its standard output.
    pub(super) fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        out.stdout
    }

    fn token(claims: Value, secret: &str) -> String {
        // ring for the whole test process, even when this runs before any `from_config`.
        install_jwt_provider();
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn each_failure_has_its_message() {
        let a = auth();
        let ok = json!({"sub": "u1", "org_id": "o1", "role": "staff", "exp": now() + 60});
        let p = a.verify(Some(&token(ok.clone(), SECRET))).unwrap();
        assert_eq!(
            (&*p.org, &*p.role, p.sites.is_none()),
            ("o1", "staff", true)
        );
        let cases: Vec<(Option<String>, AuthError)> = vec![
            (None, AuthError::Missing),
            (Some(String::new()), AuthError::Missing),
            (
                Some(token(
                    json!({"sub": "u", "org_id": "o", "exp": now() - 120}),
                    SECRET,
                )),
                AuthError::Expired,
            ),
            (
                Some(token(ok.clone(), "another-secret-of-16-bytes")),
                AuthError::Signature,
            ),
            (Some("not.a.jwt".into()), AuthError::Malformed),
            (Some("garbage".into()), AuthError::Malformed),
            (
                Some(token(json!({"org_id": "o", "exp": now() + 60}), SECRET)),
                AuthError::Claims,
            ),
            (
                Some(token(
                    json!({"sub": "u", "org_id": "o", "site_ids": "s1"}),
                    SECRET,
                )),
                AuthError::Claims,
            ),
            (
                Some(token(json!({"sub": "u", "exp": now() + 60}), SECRET)),
                AuthError::NoOrganization,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(a.verify(t.as_deref()).unwrap_err(), want, "token {t:?}");
        }
    }

    #[test]
    fn leeway_accepts_a_token_that_just_expired() {
        let t = token(
            json!({"sub": "u", "org_id": "o", "exp": now() - 10}),
            SECRET,
        );
        assert!(auth().verify(Some(&t)).is_ok());
    }

    #[test]
    fn a_token_not_valid_yet_or_with_a_bad_nbf_is_refused() {
        let a = auth();
        let nbf = |v: Value| token(json!({"sub": "u", "org_id": "o", "nbf": v}), SECRET);
        let ten_days = now() + 10 * 86_400;
        assert_eq!(
            a.verify(Some(&nbf(json!(ten_days)))).unwrap_err(),
            AuthError::Claims
        );
        assert_eq!(
            a.verify(Some(&nbf(json!("x")))).unwrap_err(),
            AuthError::Claims
        );
        assert!(
            a.verify(Some(&nbf(json!(now() + 10)))).is_ok(),
            "within the leeway"
        );
        assert!(a.verify(Some(&nbf(json!(now() - 10)))).is_ok());
    }

    #[test]
    fn site_claim_restricts_sites() {
        let t = token(
            json!({"sub": "u", "org_id": "o", "site_ids": ["s1"]}),
            SECRET,
        );
        let p = auth().verify(Some(&t)).unwrap();
        assert!(p.may_see_site("s1"));
        assert!(!p.may_see_site("s2"));
    }

    /// ring verifies RSA keys of 2048 bits and more: a smaller key is refused at start with
    /// its size, not token by token as a bad signature.
    #[test]
    fn an_rsa_key_under_2048_bits_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| openssl(dir.path(), args);
        for (bits, accepted) in [("1024", false), ("2048", true)] {
            openssl(&["genrsa", "-out", "key.pem", bits]);
            openssl(&["rsa", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
            let cfg = AuthConfig {
                jwt_public_key_file: Some(dir.path().join("pub.pem")),
                ..AuthConfig::default()
            };
            match Authenticator::from_config(&cfg) {
                Ok(_) => assert!(accepted, "{bits} bits accepted"),
                Err(e) => {
                    assert!(!accepted, "{bits} bits refused: {}", e.0);
                    assert!(e.0.contains("an RSA key of 1024 bits"), "{}", e.0);
                }
            }
        }
        // The private key by mistake: refused, saying it is not a public key.
        for args in [
            &["genrsa", "-traditional", "-out", "key.pem", "2048"][..],
            &["genrsa", "-out", "key.pem", "2048"],
        ] {
            openssl(args);
            let cfg = AuthConfig {
                jwt_public_key_file: Some(dir.path().join("key.pem")),
                ..AuthConfig::default()
            };
            let e = Authenticator::from_config(&cfg)
                .err()
                .expect("a private key is refused");
            assert!(e.0.contains("not an RSA"), "{args:?}: {}", e.0);
        }
    }
}
