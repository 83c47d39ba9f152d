//! The handshake's JWT: HS256 with the bench secret, `exp` required, the organization in
//! `org_id` (sensorcast's bench config reads that claim; the loadgen's tokens carry it and
//! `org`). Checked with `jsonwebtoken`, the crate sensorcast uses.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    org_id: Option<String>,
}

/// Why a handshake was refused (`connect_error.message`).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Verifier {
    pub fn new(secret: &str) -> Verifier {
        Verifier {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation: Validation::new(Algorithm::HS256),
        }
    }

    /// The token's organization.
    pub fn org_of(&self, token: Option<&str>) -> Result<String, Refused> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(Refused("Missing token"))?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| Refused("Invalid or expired token"))?;
        data.claims
            .org_id
            .filter(|o| !o.is_empty())
            .ok_or(Refused("Token has no organization"))
    }
}

#[cfg(test)]
#[path = "../../jwt.rs"]
mod loadgen_jwt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_loadgens_tokens_only() {
        let v = Verifier::new("bench-secret-0123456789abcdef");
        let good = loadgen_jwt::mint("bench-secret-0123456789abcdef", "u", "o0", "viewer");
        assert_eq!(v.org_of(Some(&good)), Ok("o0".to_string()));
        let other = loadgen_jwt::mint("another-secret", "u", "o0", "viewer");
        assert_eq!(
            v.org_of(Some(&other)),
            Err(Refused("Invalid or expired token"))
        );
        assert_eq!(v.org_of(None), Err(Refused("Missing token")));
        assert_eq!(v.org_of(Some("")), Err(Refused("Missing token")));
        assert!(v.org_of(Some("a.b.c")).is_err());
    }
}
