//! Certificate credentials as the Microsoft identity platform checks them: a
//! client assertion (RFC 7523) signed RS256 with the private key of a
//! certificate uploaded to the app registration, which the assertion names
//! by thumbprint (`x5t#S256`, SHA-256, or the older `x5t`, SHA-1) in its
//! header; `aud` must be the token endpoint, `iss` and `sub` the client id,
//! and the assertion must be within `nbf`…`exp`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::Value;

/// A certificate registered for the app.
#[derive(Debug, Clone)]
pub(crate) struct RegisteredCert {
    x5t_s256: String,
    x5t: String,
    /// `RSAPublicKey` DER, from the certificate's subject public key info.
    public_key: Vec<u8>,
}

/// Why an assertion was refused: the AADSTS code, the OAuth `error`, the HTTP
/// status and the description.
pub(crate) struct Refusal {
    pub status: u16,
    pub error: &'static str,
    pub code: u32,
    pub description: String,
}

fn refuse(code: u32, description: impl Into<String>) -> Refusal {
    let (status, error) = if code == 50027 {
        (400, "invalid_request")
    } else {
        (401, "invalid_client")
    };
    Refusal {
        status,
        error,
        code,
        description: description.into(),
    }
}

impl RegisteredCert {
    /// Reads the first `CERTIFICATE` block of `pem`.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let body: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
            .map(str::trim)
            .collect();
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("certificate PEM is not base64: {e}"))?;
        if der.is_empty() {
            return Err("no CERTIFICATE block".into());
        }
        let public_key = rsa_public_key(&der).ok_or("the certificate holds no RSA public key")?;
        Ok(Self {
            x5t_s256: URL_SAFE_NO_PAD.encode(digest(&SHA256, &der)),
            x5t: URL_SAFE_NO_PAD.encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, &der)),
            public_key,
        })
    }
}

/// The `RSAPublicKey` inside a certificate: the BIT STRING that follows the
/// rsaEncryption algorithm identifier (OID 1.2.840.113549.1.1.1, NULL).
fn rsa_public_key(der: &[u8]) -> Option<Vec<u8>> {
    const ALG: [u8; 13] = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let at = der.windows(ALG.len()).position(|w| w == ALG)?;
    // SEQUENCE { alg } ends here; the BIT STRING follows.
    let rest = &der[at + ALG.len()..];
    if rest.first() != Some(&0x03) {
        return None;
    }
    let (len, header) = match *rest.get(1)? {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 => (usize::from(*rest.get(2)?), 3),
        0x82 => (
            (usize::from(*rest.get(2)?) << 8) | usize::from(*rest.get(3)?),
            4,
        ),
        _ => return None,
    };
    let bits = rest.get(header..header + len)?;
    // The first byte counts unused bits, 0 for a key.
    (bits.first() == Some(&0)).then(|| bits[1..].to_vec())
}

/// Checks `assertion` for `client_id` at the token endpoint `token_url`, at
/// Unix time `now`, against the app's certificates.
pub(crate) fn verify(
    assertion: &str,
    certs: &[RegisteredCert],
    client_id: &str,
    token_url: &str,
    now: i64,
) -> Result<(), Refusal> {
    let malformed =
        |why: &str| refuse(50027, format!("JWT token is invalid or malformed ({why})."));
    let mut parts = assertion.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a JWT has three dot-separated parts"));
    };
    let json = |p: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p.as_bytes()).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (json(h), json(c)) else {
        return Err(malformed("header or payload is not base64url JSON"));
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(s.as_bytes()) else {
        return Err(malformed("signature is not base64url"));
    };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(malformed("alg must be RS256"));
    }
    let s256 = header.get("x5t#S256").and_then(Value::as_str);
    let sha1 = header.get("x5t").and_then(Value::as_str);
    let Some(cert) = certs
        .iter()
        .find(|k| Some(k.x5t_s256.as_str()) == s256 || Some(k.x5t.as_str()) == sha1)
    else {
        let used = s256
            .or(sha1)
            .unwrap_or("(none: the header has neither x5t#S256 nor x5t)");
        return Err(refuse(
            700027,
            format!("Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{used}'. Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"),
        ));
    };
    let signed = &assertion[..h.len() + 1 + c.len()];
    if UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &cert.public_key)
        .verify(signed.as_bytes(), &signature)
        .is_err()
    {
        return Err(refuse(
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value.]",
        ));
    }
    let claim = |k: &str| claims.get(k).and_then(Value::as_str);
    if claim("iss") != Some(client_id) || claim("sub") != Some(client_id) {
        return Err(refuse(
            700021,
            format!("Client assertion application identifier doesn't match 'client_id' parameter ('{client_id}'): iss and sub must both be the client id."),
        ));
    }
    if claim("aud") != Some(token_url) {
        return Err(refuse(
            700023,
            format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials: aud must be '{token_url}', got {:?}.",
                claims.get("aud").cloned().unwrap_or(Value::Null)
            ),
        ));
    }
    if claim("jti").is_none_or(str::is_empty) {
        return Err(malformed("jti is missing"));
    }
    let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
        return Err(malformed("exp is missing"));
    };
    let nbf = claims
        .get("nbf")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    // Five minutes of clock skew, as the service allows.
    if now >= exp + 300 || now + 300 < nbf {
        return Err(refuse(
            700024,
            format!("Client assertion is not within its valid time range. Current time: {now}, assertion valid from {nbf}, expiry time of assertion {exp}."),
        ));
    }
    Ok(())
}
