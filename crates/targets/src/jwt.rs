//! RS256-signed JSON Web Tokens (RFC 7519, RFC 7515), the one signer for
//! every credential that proves itself with a private key: Google service
//! accounts (a JWT grant, RFC 7523) and Microsoft Graph's certificate
//! credential (a client assertion).
//!
//! Keys come as PEM text: PKCS#8 `PRIVATE KEY` (what Google's key files and
//! `openssl genpkey` write) or PKCS#1 `RSA PRIVATE KEY`. `CERTIFICATE` blocks
//! in the same text are kept, so a certificate credential can name its
//! certificate by thumbprint.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::Value;

/// Why a key could not be used. The message says what to fix; the caller adds where the key came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// An RSA private key, ready to sign, and any certificates that came with it.
pub struct RsaSigner {
    key: RsaKeyPair,
    certificates: Vec<Vec<u8>>,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSigner")
            .field("key", &"(hidden)")
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

impl RsaSigner {
    /// Reads the first private key (and every certificate) in `pem`.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let blocks = pem_blocks(pem)?;
        let mut key = None;
        let mut certificates = Vec::new();
        for (label, der) in blocks {
            match label.as_str() {
                "PRIVATE KEY" if key.is_none() => {
                    key = Some(RsaKeyPair::from_pkcs8(&der).map_err(|e| {
                        KeyError(format!("the PRIVATE KEY is not a usable RSA key ({e})"))
                    })?);
                }
                "RSA PRIVATE KEY" if key.is_none() => {
                    key = Some(RsaKeyPair::from_der(&der).map_err(|e| {
                        KeyError(format!("the RSA PRIVATE KEY is not a usable RSA key ({e})"))
                    })?);
                }
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(KeyError(
                        "the private key is encrypted; store it unencrypted (`openssl pkcs8 -topk8 -nocrypt`) and protect the file instead".into(),
                    ))
                }
                "CERTIFICATE" => certificates.push(der),
                _ => {}
            }
        }
        let key = key.ok_or_else(|| {
            KeyError(
                "no `-----BEGIN PRIVATE KEY-----` block (an RSA key in PKCS#8 or PKCS#1 PEM)"
                    .into(),
            )
        })?;
        Ok(Self { key, certificates })
    }

    /// The DER of the first certificate that came with the key, if any.
    pub fn certificate(&self) -> Option<&[u8]> {
        self.certificates.first().map(Vec::as_slice)
    }

    /// `header.claims.signature`, base64url, with `alg` = RS256 and `typ` = JWT
    /// added to `header` (which may carry `kid`, `x5t`, …).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let mut header = header.clone();
        if let Value::Object(h) = &mut header {
            h.insert("alg".into(), "RS256".into());
            h.insert("typ".into(), "JWT".into());
        }
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                token.as_bytes(),
                &mut signature,
            )
            .expect("RSA signing with a valid key and a modulus-sized buffer cannot fail");
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        token
    }
}

/// base64url without padding, as JWTs and thumbprints use.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The `(label, der)` of every `-----BEGIN label-----` block in `text`.
pub fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            open = Some((label.to_string(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            let (begun, body) = open.take().ok_or_else(|| {
                KeyError(format!(
                    "line {}: `-----END {label}-----` without a BEGIN",
                    n + 1
                ))
            })?;
            let der = STANDARD.decode(body.as_bytes()).map_err(|e| {
                KeyError(format!(
                    "the {begun} block ending on line {} is not valid base64 ({e})",
                    n + 1
                ))
            })?;
            out.push((begun, der));
        } else if let Some((_, body)) = &mut open {
            if !line.contains(':') {
                body.push_str(line);
            }
        }
    }
    if let Some((label, _)) = open {
        return Err(KeyError(format!(
            "the {label} block has no END line (is the file cut short?)"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use edusync_testkit::TEST_RSA_KEY_PEM as KEY;

    #[test]
    fn signs_a_verifiable_rs256_token() {
        let signer = RsaSigner::from_pem(KEY).unwrap();
        assert!(signer.certificate().is_none());
        let with_cert = format!("{KEY}{}", edusync_testkit::TEST_CERT_PEM);
        assert!(RsaSigner::from_pem(&with_cert)
            .unwrap()
            .certificate()
            .is_some());
        let token = signer.sign(
            &serde_json::json!({"kid": "k1"}),
            &serde_json::json!({"iss": "a", "exp": 1}),
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "k1");
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signer.key.public().as_ref().to_vec(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        public.verify(signed.as_bytes(), &signature).unwrap();
    }

    #[test]
    fn explains_what_is_wrong_with_a_key() {
        let e = RsaSigner::from_pem("nothing here").unwrap_err().to_string();
        assert!(e.contains("no `-----BEGIN PRIVATE KEY-----`"), "{e}");
        let cut = KEY.lines().take(5).collect::<Vec<_>>().join("\n");
        let e = RsaSigner::from_pem(&cut).unwrap_err().to_string();
        assert!(e.contains("no END line"), "{e}");
        let e = RsaSigner::from_pem(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("encrypted"), "{e}");
    }
}
