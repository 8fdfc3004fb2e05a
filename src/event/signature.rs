//! Authenticity checks, always over the raw request bytes and always in
//! constant time.
//!
//! | scheme | header | MAC |
//! |---|---|---|
//! | WAHA | `X-Webhook-Hmac` | hex HMAC-SHA512(body, hmac_key) |
//! | Meta | `X-Hub-Signature-256` | `sha256=` + hex HMAC-SHA256(body, app_secret) |
//! | Standard Webhooks | `webhook-id`, `webhook-timestamp`, `webhook-signature` | `v1,` + base64 HMAC-SHA256(`id.timestamp.body`, base64-decoded secret after `whsec_`) |
//! | signed-webhook platform (seed 004) | `X-Webhook-Signature` | hex HMAC-SHA256(body, secret string as written) |
//! | token | `?token=`, `X-Webhook-Token`, `Authorization: Bearer` | plain comparison |
//!
//! Every scheme configured on a source must pass. A source with none
//! configured accepts anything (the server warns about it at start-up).
//! Errors say which check failed, never a secret or the expected value.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::Secret;

pub const HEADER_WAHA_HMAC: &str = "x-webhook-hmac";
pub const HEADER_HUB_SIGNATURE: &str = "x-hub-signature-256";
pub const HEADER_WEBHOOK_ID: &str = "webhook-id";
pub const HEADER_WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_WEBHOOK_SIGNATURE: &str = "webhook-signature";
pub const HEADER_X_WEBHOOK_SIGNATURE: &str = "x-webhook-signature";
pub const HEADER_WEBHOOK_TOKEN: &str = "x-webhook-token";
const HEADER_AUTHORIZATION: &str = "authorization";

/// Standard Webhooks: how far a delivery's timestamp may be from now.
const STANDARD_TOLERANCE_SECS: i64 = 5 * 60;

/// Access to request headers by lower-case name, so this module does not
/// depend on an HTTP library.
pub trait HeaderLookup {
    fn header(&self, name: &str) -> Option<&str>;
}

impl HeaderLookup for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// The secrets configured on one source.
#[derive(Debug, Clone, Default)]
pub struct SourceAuth {
    /// `?token=`, `X-Webhook-Token` or `Authorization: Bearer`.
    pub token: Option<Secret>,
    /// WAHA `X-Webhook-Hmac` (HMAC-SHA512).
    pub waha_hmac_key: Option<Secret>,
    /// Meta `X-Hub-Signature-256`.
    pub meta_app_secret: Option<Secret>,
    /// Standard Webhooks secrets (`whsec_...`), any of which may match; also
    /// used for the seed-004 `X-Webhook-Signature` scheme.
    pub standard_secrets: Vec<Secret>,
}

impl SourceAuth {
    /// True when no check is configured: anything is accepted.
    pub fn is_open(&self) -> bool {
        self.token.is_none()
            && self.waha_hmac_key.is_none()
            && self.meta_app_secret.is_none()
            && self.standard_secrets.is_empty()
    }
}

/// Which check failed. The message names the header or parameter, never a
/// secret or an expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing token: send it as ?token=, an X-Webhook-Token header, or Authorization: Bearer"
    )]
    MissingToken,
    #[error("token does not match")]
    BadToken,
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("{0} header is malformed: {1}")]
    Malformed(&'static str, &'static str),
    #[error("{0} signature does not match the body")]
    BadSignature(&'static str),
    #[error("webhook-timestamp is more than 5 minutes away from the server's clock")]
    StaleTimestamp,
}

/// Check a request against every scheme configured on the source.
pub fn verify(
    auth: &SourceAuth,
    headers: &(impl HeaderLookup + ?Sized),
    query_token: Option<&str>,
    body: &[u8],
    now: Timestamp,
) -> Result<(), AuthError> {
    if let Some(token) = &auth.token {
        verify_token(token, headers, query_token)?;
    }
    if let Some(key) = &auth.waha_hmac_key {
        let sent = headers
            .header(HEADER_WAHA_HMAC)
            .ok_or(AuthError::MissingHeader("X-Webhook-Hmac"))?;
        let sent =
            decode_hex(sent).ok_or(AuthError::Malformed("X-Webhook-Hmac", "expected hex"))?;
        let mut mac = Hmac::<Sha512>::new_from_slice(key.expose().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(body);
        mac.verify_slice(&sent)
            .map_err(|_| AuthError::BadSignature("X-Webhook-Hmac"))?;
    }
    if let Some(secret) = &auth.meta_app_secret {
        let sent = headers
            .header(HEADER_HUB_SIGNATURE)
            .ok_or(AuthError::MissingHeader("X-Hub-Signature-256"))?;
        let hex_part = sent
            .trim()
            .strip_prefix("sha256=")
            .ok_or(AuthError::Malformed(
                "X-Hub-Signature-256",
                "expected sha256=<hex>",
            ))?;
        let sent = decode_hex(hex_part).ok_or(AuthError::Malformed(
            "X-Hub-Signature-256",
            "expected sha256=<hex>",
        ))?;
        let mut mac = hmac_sha256(secret.expose().as_bytes());
        mac.update(body);
        mac.verify_slice(&sent)
            .map_err(|_| AuthError::BadSignature("X-Hub-Signature-256"))?;
    }
    if !auth.standard_secrets.is_empty() {
        if headers.header(HEADER_WEBHOOK_SIGNATURE).is_some() {
            verify_standard(&auth.standard_secrets, headers, body, now)?;
        } else if let Some(sent) = headers.header(HEADER_X_WEBHOOK_SIGNATURE) {
            verify_hex_sha256(&auth.standard_secrets, sent, body)?;
        } else {
            return Err(AuthError::MissingHeader(
                "webhook-signature (Standard Webhooks) or X-Webhook-Signature",
            ));
        }
    }
    Ok(())
}

fn verify_token(
    token: &Secret,
    headers: &(impl HeaderLookup + ?Sized),
    query_token: Option<&str>,
) -> Result<(), AuthError> {
    let bearer = headers.header(HEADER_AUTHORIZATION).and_then(|v| {
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let offered = [query_token, headers.header(HEADER_WEBHOOK_TOKEN), bearer];
    let mut any = false;
    for candidate in offered.into_iter().flatten() {
        any = true;
        if bool::from(candidate.as_bytes().ct_eq(token.expose().as_bytes())) {
            return Ok(());
        }
    }
    Err(if any {
        AuthError::BadToken
    } else {
        AuthError::MissingToken
    })
}

fn verify_standard(
    secrets: &[Secret],
    headers: &(impl HeaderLookup + ?Sized),
    body: &[u8],
    now: Timestamp,
) -> Result<(), AuthError> {
    let id = headers
        .header(HEADER_WEBHOOK_ID)
        .ok_or(AuthError::MissingHeader("webhook-id"))?;
    let ts_text = headers
        .header(HEADER_WEBHOOK_TIMESTAMP)
        .ok_or(AuthError::MissingHeader("webhook-timestamp"))?;
    let ts: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| AuthError::Malformed("webhook-timestamp", "expected Unix seconds"))?;
    if (now.as_second() - ts).abs() > STANDARD_TOLERANCE_SECS {
        return Err(AuthError::StaleTimestamp);
    }
    let signatures = headers.header(HEADER_WEBHOOK_SIGNATURE).unwrap_or_default();
    let sent: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .collect();
    if sent.is_empty() {
        return Err(AuthError::Malformed(
            "webhook-signature",
            "expected a space-separated list of v1,<base64>",
        ));
    }
    for secret in secrets {
        let Some(key) = standard_key(secret) else {
            continue;
        };
        let mut mac = hmac_sha256(&key);
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(ts_text.trim().as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        if sent
            .iter()
            .any(|s| bool::from(s.as_slice().ct_eq(expected.as_slice())))
        {
            return Ok(());
        }
    }
    Err(AuthError::BadSignature("webhook-signature"))
}

fn verify_hex_sha256(secrets: &[Secret], sent: &str, body: &[u8]) -> Result<(), AuthError> {
    let sent = sent.trim();
    let sent = sent.strip_prefix("sha256=").unwrap_or(sent);
    let sent =
        decode_hex(sent).ok_or(AuthError::Malformed("X-Webhook-Signature", "expected hex"))?;
    for secret in secrets {
        let mut mac = hmac_sha256(secret.expose().as_bytes());
        mac.update(body);
        if mac.verify_slice(&sent).is_ok() {
            return Ok(());
        }
    }
    Err(AuthError::BadSignature("X-Webhook-Signature"))
}

/// The signing key of a `whsec_<base64>` secret (the prefix is optional).
/// `None` when it does not decode, or decodes to nothing: an empty HMAC key
/// is one anybody can sign with. Config loading checks secrets with
/// [`is_standard_secret`].
fn standard_key(secret: &Secret) -> Option<Vec<u8>> {
    let s = secret.expose();
    B64.decode(s.strip_prefix("whsec_").unwrap_or(s))
        .ok()
        .filter(|key| !key.is_empty())
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length")
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.trim()).ok()
}

/// Whether `secret` can sign and verify Standard Webhooks signatures:
/// `whsec_` (optional) then base64 of a non-empty key.
pub fn is_standard_secret(secret: &Secret) -> bool {
    standard_key(secret).is_some()
}

/// `webhook-signature` value for a delivery, for senders (the `http`
/// connector) and tests. `None` when the secret is not `whsec_<base64>`
/// with a non-empty key.
pub fn sign_standard_webhooks(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    let key = standard_key(secret)?;
    let mut mac = hmac_sha256(&key);
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn hex_mac_sha256(key: &str, body: &[u8]) -> String {
        let mut mac = hmac_sha256(key.as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    const WAHA_BODY: &[u8] = br#"{"event":"message","session":"default","engine":"WEBJS"}"#;
    const WAHA_VECTOR: &str = "208f8a55dde9e05519e898b10b89bf0d0b3b0fdf11fdbf09b6b90476301b98d8097c462b2b17a6ce93b6b47a136cf2e78a33a63f6752c2c1631777076153fa89";

    fn waha_auth() -> SourceAuth {
        SourceAuth {
            waha_hmac_key: Some(Secret::new("my-secret-key")),
            ..Default::default()
        }
    }

    #[test]
    fn waha_published_vector_verifies() {
        let headers: &[(&str, &str)] = &[("X-Webhook-Hmac", WAHA_VECTOR)];
        assert_eq!(
            verify(&waha_auth(), headers, None, WAHA_BODY, at(0)),
            Ok(())
        );
    }

    #[test]
    fn waha_tampered_body_or_missing_header_fails() {
        let headers: &[(&str, &str)] = &[("X-Webhook-Hmac", WAHA_VECTOR)];
        let tampered = br#"{"event":"message","session":"default","engine":"NOWEB"}"#;
        assert_eq!(
            verify(&waha_auth(), headers, None, tampered, at(0)),
            Err(AuthError::BadSignature("X-Webhook-Hmac"))
        );
        let none: &[(&str, &str)] = &[];
        assert_eq!(
            verify(&waha_auth(), none, None, WAHA_BODY, at(0)),
            Err(AuthError::MissingHeader("X-Webhook-Hmac"))
        );
        let garbage: &[(&str, &str)] = &[("X-Webhook-Hmac", "not-hex")];
        assert!(matches!(
            verify(&waha_auth(), garbage, None, WAHA_BODY, at(0)),
            Err(AuthError::Malformed(..))
        ));
    }

    const STD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const STD_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const STD_TS: i64 = 1614265330;
    const STD_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const STD_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn std_auth(secrets: &[&str]) -> SourceAuth {
        SourceAuth {
            standard_secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn standard_webhooks_published_vector_verifies() {
        let ts = STD_TS.to_string();
        let headers: &[(&str, &str)] = &[
            ("webhook-id", STD_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", STD_SIG),
        ];
        assert_eq!(
            verify(
                &std_auth(&[STD_SECRET]),
                headers,
                None,
                STD_BODY,
                at(STD_TS)
            ),
            Ok(())
        );
        let ours =
            sign_standard_webhooks(&Secret::new(STD_SECRET), STD_ID, STD_TS, STD_BODY).unwrap();
        assert_eq!(ours, STD_SIG);
    }

    #[test]
    fn standard_webhooks_any_secret_and_any_listed_signature_may_match() {
        let ts = STD_TS.to_string();
        let list = format!("v1,AAAA v1a,ignored {STD_SIG}");
        let headers: &[(&str, &str)] = &[
            ("webhook-id", STD_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &list),
        ];
        let rotated = std_auth(&["whsec_b2xkc2VjcmV0b2xkc2VjcmV0", STD_SECRET]);
        assert_eq!(
            verify(&rotated, headers, None, STD_BODY, at(STD_TS + 60)),
            Ok(())
        );
    }

    #[test]
    fn standard_webhooks_rejects_tampering_and_stale_timestamps() {
        let ts = STD_TS.to_string();
        let headers: &[(&str, &str)] = &[
            ("webhook-id", STD_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", STD_SIG),
        ];
        let auth = std_auth(&[STD_SECRET]);
        assert_eq!(
            verify(&auth, headers, None, br#"{"test": 2432232315}"#, at(STD_TS)),
            Err(AuthError::BadSignature("webhook-signature"))
        );
        assert_eq!(
            verify(&auth, headers, None, STD_BODY, at(STD_TS + 301)),
            Err(AuthError::StaleTimestamp)
        );
        assert_eq!(
            verify(&auth, headers, None, STD_BODY, at(STD_TS - 301)),
            Err(AuthError::StaleTimestamp)
        );
        let other_id: &[(&str, &str)] = &[
            ("webhook-id", "msg_other"),
            ("webhook-timestamp", &ts),
            ("webhook-signature", STD_SIG),
        ];
        assert!(verify(&auth, other_id, None, STD_BODY, at(STD_TS)).is_err());
    }

    #[test]
    fn a_standard_secret_that_does_not_decode_to_a_key_cannot_sign() {
        let sign = |s: &str| sign_standard_webhooks(&Secret::new(s), STD_ID, STD_TS, STD_BODY);
        assert_eq!(sign(STD_SECRET).as_deref(), Some(STD_SIG));
        // The prefix is optional, as in the verifier.
        assert_eq!(
            sign(STD_SECRET.strip_prefix("whsec_").unwrap()).as_deref(),
            Some(STD_SIG)
        );
        for bad in ["whsec_not*base64!!", "whsec_abc", "whsec_", ""] {
            assert_eq!(sign(bad), None, "{bad:?}");
        }
        // An empty key would let anyone sign: it never verifies either.
        let ts = STD_TS.to_string();
        let mut mac = hmac_sha256(b"");
        mac.update(format!("{STD_ID}.{ts}.").as_bytes());
        mac.update(STD_BODY);
        let forged = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
        let headers: &[(&str, &str)] = &[
            ("webhook-id", STD_ID),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &forged),
        ];
        assert_eq!(
            verify(&std_auth(&["whsec_"]), headers, None, STD_BODY, at(STD_TS)),
            Err(AuthError::BadSignature("webhook-signature"))
        );
    }

    #[test]
    fn seed_004_hex_signature_is_keyed_with_the_secret_as_written() {
        let body = br#"{"id":"evt_1","type":"message.report"}"#;
        let sig = hex_mac_sha256(STD_SECRET, body);
        let headers: &[(&str, &str)] = &[("X-Webhook-Signature", &sig)];
        let auth = std_auth(&[STD_SECRET]);
        assert_eq!(verify(&auth, headers, None, body, at(0)), Ok(()));
        assert_eq!(
            verify(
                &auth,
                headers,
                None,
                br#"{"id":"evt_2","type":"message.report"}"#,
                at(0)
            ),
            Err(AuthError::BadSignature("X-Webhook-Signature"))
        );
    }

    #[test]
    fn meta_signature_checks_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let sig = format!("sha256={}", hex_mac_sha256("app-secret", body));
        let auth = SourceAuth {
            meta_app_secret: Some(Secret::new("app-secret")),
            ..Default::default()
        };
        let headers: &[(&str, &str)] = &[("X-Hub-Signature-256", &sig)];
        assert_eq!(verify(&auth, headers, None, body, at(0)), Ok(()));
        assert_eq!(
            verify(
                &auth,
                headers,
                None,
                br#"{"object":"whatsapp_business_account","entry":[1]}"#,
                at(0)
            ),
            Err(AuthError::BadSignature("X-Hub-Signature-256"))
        );
        let no_prefix = hex_mac_sha256("app-secret", body);
        let headers: &[(&str, &str)] = &[("X-Hub-Signature-256", &no_prefix)];
        assert!(matches!(
            verify(&auth, headers, None, body, at(0)),
            Err(AuthError::Malformed(..))
        ));
    }

    #[test]
    fn token_is_accepted_from_query_header_or_bearer() {
        let auth = SourceAuth {
            token: Some(Secret::new("s3cret")),
            ..Default::default()
        };
        let none: &[(&str, &str)] = &[];
        assert_eq!(verify(&auth, none, Some("s3cret"), b"{}", at(0)), Ok(()));
        let h: &[(&str, &str)] = &[("X-Webhook-Token", "s3cret")];
        assert_eq!(verify(&auth, h, None, b"{}", at(0)), Ok(()));
        let h: &[(&str, &str)] = &[("Authorization", "Bearer s3cret")];
        assert_eq!(verify(&auth, h, None, b"{}", at(0)), Ok(()));
        assert_eq!(
            verify(&auth, none, None, b"{}", at(0)),
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            verify(&auth, none, Some("wrong"), b"{}", at(0)),
            Err(AuthError::BadToken)
        );
        let h: &[(&str, &str)] = &[("Authorization", "Basic s3cret")];
        assert_eq!(
            verify(&auth, h, None, b"{}", at(0)),
            Err(AuthError::MissingToken)
        );
    }

    #[test]
    fn errors_never_contain_the_secret() {
        let auth = SourceAuth {
            token: Some(Secret::new("hunter2-token")),
            ..Default::default()
        };
        let none: &[(&str, &str)] = &[];
        let err = verify(&auth, none, Some("nope"), b"{}", at(0)).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert_eq!(format!("{auth:?}").matches("hunter2").count(), 0);
    }

    #[test]
    fn an_open_source_accepts_anything() {
        let none: &[(&str, &str)] = &[];
        assert!(SourceAuth::default().is_open());
        assert_eq!(
            verify(&SourceAuth::default(), none, None, b"x", at(0)),
            Ok(())
        );
    }
}
