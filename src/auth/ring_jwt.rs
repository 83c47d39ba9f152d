//! jsonwebtoken's cryptography on `ring`, the library rustls already brings: HMAC (HS256/384/512)
//! both ways, and verification of RS256/384/512 (RSA keys of 2048 to 8192 bits) and
//! ES256/ES384. Written here because jsonwebtoken's own providers are RustCrypto (RSA, two
//! elliptic curves and ed25519 on big-integer crates of their own, about 300 KB of the binary)
//! or aws-lc; this one is only the glue from its traits to `ring`'s verifiers.
//!
//! Signing with a private key is not offered: sensorcast verifies tokens, it never issues
//! asymmetric ones (the sign-in page's tokens are HMAC).

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{
    self as rs, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm,
};
use ring::{hmac, hmac::HMAC_SHA256, hmac::HMAC_SHA384, hmac::HMAC_SHA512};

/// Installs the provider for the process (once; later calls and a provider installed first
/// leave it as it is).
pub fn install() {
    let _ = PROVIDER.install_default();
}

/// The modulus size of an RSA public key as jsonwebtoken keeps it from a PEM (PKCS#1
/// `RSAPublicKey` DER), or `None` when it is not one. ring verifies 2048 to 8192 bits only.
pub fn rsa_bits(key: &DecodingKey) -> Option<u64> {
    let DecodingKeyKind::SecretOrDer(der) = key.kind() else {
        return None;
    };
    match simple_asn1::from_der(der).ok()?.first()? {
        simple_asn1::ASN1Block::Sequence(_, items) => match items.first()? {
            simple_asn1::ASN1Block::Integer(_, n) => Some(n.bits()),
            _ => None,
        },
        _ => None,
    }
}

/// The RSA key sizes ring verifies.
pub const RSA_BITS: std::ops::RangeInclusive<u64> = 2048..=8192;

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    jwk_utils: JwkUtils::new_unimplemented(),
};

fn hmac_algorithm(alg: &Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(HMAC_SHA256),
        Algorithm::HS384 => Some(HMAC_SHA384),
        Algorithm::HS512 => Some(HMAC_SHA512),
        _ => None,
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    let hmac = hmac_algorithm(alg).ok_or(ErrorKind::InvalidAlgorithm)?;
    Ok(Box::new(Hmac {
        alg: *alg,
        key: hmac::Key::new(hmac, key.try_get_hmac_secret()?),
    }))
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    if let Some(hmac) = hmac_algorithm(alg) {
        return Ok(Box::new(Hmac {
            alg: *alg,
            key: hmac::Key::new(hmac, key.try_get_hmac_secret()?),
        }));
    }
    let (scheme, family): (&'static dyn VerificationAlgorithm, _) = match alg {
        Algorithm::RS256 => (&rs::RSA_PKCS1_2048_8192_SHA256, Family::Rsa),
        Algorithm::RS384 => (&rs::RSA_PKCS1_2048_8192_SHA384, Family::Rsa),
        Algorithm::RS512 => (&rs::RSA_PKCS1_2048_8192_SHA512, Family::Rsa),
        Algorithm::ES256 => (&rs::ECDSA_P256_SHA256_FIXED, Family::Ec),
        Algorithm::ES384 => (&rs::ECDSA_P384_SHA384_FIXED, Family::Ec),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    let expected = match family {
        Family::Rsa => jsonwebtoken::AlgorithmFamily::Rsa,
        Family::Ec => jsonwebtoken::AlgorithmFamily::Ec,
    };
    if key.family() != expected {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(Public {
        alg: *alg,
        scheme,
        key: key.kind().clone(),
    }))
}

enum Family {
    Rsa,
    Ec,
}

struct Hmac {
    alg: Algorithm,
    key: hmac::Key,
}

impl signature::Signer<Vec<u8>> for Hmac {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.key, msg).as_ref().to_vec())
    }
}

impl signature::Verifier<Vec<u8>> for Hmac {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        // Constant time, by ring.
        hmac::verify(&self.key, msg, sig).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hmac {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl JwtVerifier for Hmac {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// An RSA or EC public key as jsonwebtoken parsed it: PKCS#1 `RSAPublicKey` DER (from a PEM's
/// SPKI), RSA modulus and exponent, or an uncompressed EC point.
struct Public {
    alg: Algorithm,
    scheme: &'static dyn VerificationAlgorithm,
    key: DecodingKeyKind,
}

impl signature::Verifier<Vec<u8>> for Public {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let ok = match &self.key {
            DecodingKeyKind::SecretOrDer(der) => {
                UnparsedPublicKey::new(self.scheme, der).verify(msg, sig)
            }
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                let params = match self.alg {
                    Algorithm::RS256 => &rs::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &rs::RSA_PKCS1_2048_8192_SHA384,
                    _ => &rs::RSA_PKCS1_2048_8192_SHA512,
                };
                RsaPublicKeyComponents { n, e }.verify(params, msg, sig)
            }
        };
        ok.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Public {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    //! Tokens signed by jsonwebtoken's RustCrypto provider (a test dependency) verify here;
    //! the service's end-to-end ES256/RS256 test is `tests/edges.rs`.
    use super::*;
    use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER as RUST_CRYPTO;

    /// `header.claims` and its signature by RustCrypto, base64url without padding.
    fn signed(alg: Algorithm, key: &EncodingKey) -> (Vec<u8>, Vec<u8>) {
        let message = b"eyJhbGciOiJFUzM4NCJ9.eyJzdWIiOiJ1In0".to_vec();
        let signer = (RUST_CRYPTO.signer_factory)(&alg, key).unwrap();
        (message.clone(), signer.try_sign(&message).unwrap())
    }

    fn check(alg: Algorithm, sign: &EncodingKey, verify: &DecodingKey) {
        let (msg, sig) = signed(alg, sign);
        let v = verifier(&alg, verify).unwrap();
        assert!(v.verify(&msg, &sig).is_ok(), "{alg:?}: a good signature");
        let mut bad = sig.clone();
        bad[5] ^= 1;
        assert!(
            v.verify(&msg, &bad).is_err(),
            "{alg:?}: a changed signature"
        );
        assert!(
            v.verify(b"another.message", &sig).is_err(),
            "{alg:?}: another message"
        );
    }

    #[test]
    fn hmac_signs_and_verifies_like_rust_crypto() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let secret = b"a-secret-of-thirty-two-bytes-xx!";
            check(
                alg,
                &EncodingKey::from_secret(secret),
                &DecodingKey::from_secret(secret),
            );
            let ours = signer(&alg, &EncodingKey::from_secret(secret)).unwrap();
            let (msg, theirs) = signed(alg, &EncodingKey::from_secret(secret));
            assert_eq!(ours.try_sign(&msg).unwrap(), theirs, "{alg:?}");
        }
    }

    #[test]
    fn ecdsa_p256_and_p384_verify() {
        for (alg, curve) in [
            (Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256),
            (Algorithm::ES384, &rcgen::PKCS_ECDSA_P384_SHA384),
        ] {
            let pair = rcgen::KeyPair::generate_for(curve).unwrap();
            let sign = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
            let verify = DecodingKey::from_ec_pem(pair.public_key_pem().as_bytes()).unwrap();
            check(alg, &sign, &verify);
        }
    }

    #[test]
    fn rsa_from_pem_and_from_components_verify() {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| crate::auth::tests::openssl(dir.path(), args);
        openssl(&["genrsa", "-traditional", "-out", "key.pem", "2048"]);
        openssl(&["rsa", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
        let sign =
            EncodingKey::from_rsa_pem(&std::fs::read(dir.path().join("key.pem")).unwrap()).unwrap();
        let public = std::fs::read(dir.path().join("pub.pem")).unwrap();
        for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
            check(alg, &sign, &DecodingKey::from_rsa_pem(&public).unwrap());
        }
        // The same key as modulus and exponent (a JWKS's form).
        let text = String::from_utf8(openssl(&[
            "rsa", "-pubin", "-in", "pub.pem", "-noout", "-modulus",
        ]))
        .unwrap();
        let n = decode_hex(text.trim().trim_start_matches("Modulus="));
        check(
            Algorithm::RS256,
            &sign,
            &DecodingKey::from_rsa_raw_components(&n, &[1, 0, 1]),
        );
    }

    #[test]
    fn a_key_of_the_wrong_family_or_an_unsupported_algorithm_is_refused() {
        let hmac = DecodingKey::from_secret(b"secret");
        assert!(verifier(&Algorithm::RS256, &hmac).is_err());
        assert!(verifier(&Algorithm::EdDSA, &hmac).is_err());
        assert!(verifier(&Algorithm::PS256, &hmac).is_err());
        assert!(signer(&Algorithm::RS256, &EncodingKey::from_secret(b"s")).is_err());
    }

    fn decode_hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
