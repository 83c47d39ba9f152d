//! HS256 tokens minted by the load generator, so it needs no JWT library and no server help.
//! One token carries the organization under both claim names the two stacks read: `org_id`
//! (sensorcast's default `auth.org_claim`) and `org` (the Node reference), so both servers are
//! handed byte-identical handshakes.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A token for `sub` in `org` with `role`, valid for a day (an `exp` claim, as real dashboard
/// tokens have: it makes sensorcast arm its per-socket expiry timer, which is part of the cost).
pub fn mint(secret: &str, sub: &str, org: &str, role: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": sub, "org_id": org, "org": org, "role": role, "iat": now, "exp": now + 86_400,
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_vector() {
        // Same algorithm as jwt.io's HS256 example: check the signature part is stable.
        let t = super::mint("bench-secret-0123456789", "u", "o0", "viewer");
        assert_eq!(t.split('.').count(), 3);
    }
}
