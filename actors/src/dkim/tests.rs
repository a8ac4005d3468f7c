//! Signatures checked with mail-auth's own verifier, fed the public key through a pre-filled
//! DNS cache; keys are made at test time with the `openssl` CLI.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use base64::Engine;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};

use super::*;

/// A private key file and the `p=` value of its DNS record.
pub(crate) struct TestKey {
    pub path: PathBuf,
    pub kind: KeyKind,
    pub public_b64: String,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).output().expect("the openssl CLI runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Make a key in `dir`: RSA-2048 (PKCS#1 when `traditional`, else PKCS#8) or ed25519 (PKCS#8 v1).
pub(crate) fn make_key(dir: &Path, kind: KeyKind, traditional: bool) -> TestKey {
    let path = dir.join(match (kind, traditional) {
        (KeyKind::RsaSha256, true) => "rsa-pkcs1.pem",
        (KeyKind::RsaSha256, false) => "rsa-pkcs8.pem",
        (KeyKind::Ed25519, _) => "ed25519.pem",
    });
    let p = path.to_str().unwrap();
    match kind {
        KeyKind::RsaSha256 if traditional => openssl(&["genrsa", "-traditional", "-out", p, "2048"]),
        KeyKind::RsaSha256 => {
            openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p])
        }
        KeyKind::Ed25519 => openssl(&["genpkey", "-algorithm", "ed25519", "-out", p]),
    };
    let spki = openssl(&["pkey", "-in", p, "-pubout", "-outform", "DER"]);
    // An ed25519 record carries the bare 32-byte key (RFC 8463), an RSA record the SPKI.
    let public = if kind == KeyKind::Ed25519 { &spki[spki.len() - 32..] } else { &spki[..] };
    TestKey { path, kind, public_b64: base64::engine::general_purpose::STANDARD.encode(public) }
}

pub(crate) fn spec(key: &TestKey, domain: &str, selector: &str) -> SignerSpec {
    SignerSpec::new(key.kind, domain, selector, &["From", "To", "Subject"], KeySource::File(key.path.clone()))
}

/// A DNS TXT cache holding the test keys, so verification never leaves the process.
#[derive(Default)]
pub(crate) struct KeyRecords(Mutex<HashMap<Box<str>, Txt>>);

impl KeyRecords {
    pub fn publish(&self, domain: &str, selector: &str, key: &TestKey) {
        let k = if key.kind == KeyKind::Ed25519 { "ed25519" } else { "rsa" };
        let record = format!("v=DKIM1; k={k}; p={}", key.public_b64);
        let parsed = DomainKey::parse(record.as_bytes()).expect("test record parses");
        let name = format!("{selector}._domainkey.{domain}.").to_ascii_lowercase();
        self.0.lock().unwrap().insert(name.into_boxed_str(), Txt::from(parsed));
    }
}

impl ResolverCache<Box<str>, Txt> for KeyRecords {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }
    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _: Box<str>, _: Txt, _: std::time::Instant) {}
}

/// mail-auth's verdict on each DKIM-Signature of `data`, in header order.
pub(crate) fn verify(data: &[u8], records: &KeyRecords) -> Vec<DkimResult> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let authenticator = MessageAuthenticator::new_cloudflare().unwrap();
        let message = AuthenticatedMessage::parse(data).expect("message parses");
        let params = Parameters::new(&message).with_txt_cache(records);
        authenticator.verify_dkim(params).await.into_iter().map(|o| o.result().clone()).collect()
    })
}

const MESSAGE: &str =
    "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hello\r\n\r\nHi Bob,\r\nsee you.\r\n";

fn signed(signer: &Signer, data: &[u8]) -> Vec<u8> {
    let mut out = signer.sign(data).unwrap().into_bytes();
    out.extend_from_slice(data);
    out
}

#[test]
fn rsa_and_ed25519_signatures_verify_and_a_changed_body_fails() {
    let dir = tempfile::tempdir().unwrap();
    let records = KeyRecords::default();
    for (kind, traditional) in
        [(KeyKind::RsaSha256, true), (KeyKind::RsaSha256, false), (KeyKind::Ed25519, false)]
    {
        let key = make_key(dir.path(), kind, traditional);
        records.publish("example.com", "s1", &key);
        let signer = Signer::build(spec(&key, "example.com", "s1")).unwrap();
        let data = signed(&signer, MESSAGE.as_bytes());
        let header = String::from_utf8_lossy(&data);
        assert!(header.starts_with("DKIM-Signature: v=1; a="), "{header}");
        assert_eq!(verify(&data, &records), [DkimResult::Pass], "{kind:?} pkcs1={traditional}");
        let tampered = String::from_utf8(data).unwrap().replace("see you.", "see you!");
        let verdict = verify(tampered.as_bytes(), &records);
        // mail-auth reports a body hash mismatch as neutral; anything but a pass will do.
        assert!(format!("{verdict:?}").contains("FailedBodyHashMatch"), "{kind:?}: {verdict:?}");
    }
}

#[test]
fn two_signers_give_two_signatures_that_both_verify() {
    let dir = tempfile::tempdir().unwrap();
    let records = KeyRecords::default();
    let rsa = make_key(dir.path(), KeyKind::RsaSha256, false);
    let ed = make_key(dir.path(), KeyKind::Ed25519, false);
    records.publish("tenant.example", "t", &rsa);
    records.publish("esp.example", "e", &ed);
    let mut esp = spec(&ed, "esp.example", "e");
    esp.header_canonicalization = Canonicalization::Simple;
    esp.body_canonicalization = Canonicalization::Simple;
    esp.over_sign = true;
    esp.expiration = Some(3600);
    let once = signed(&Signer::build(spec(&rsa, "tenant.example", "t")).unwrap(), MESSAGE.as_bytes());
    let twice = signed(&Signer::build(esp).unwrap(), &once);
    let text = String::from_utf8_lossy(&twice);
    assert!(text.contains("c=simple/simple") && text.contains("x="), "{text}");
    assert_eq!(verify(&twice, &records), [DkimResult::Pass, DkimResult::Pass], "{text}");
}

#[test]
fn the_second_build_with_the_same_parameters_hits_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let key = make_key(dir.path(), KeyKind::Ed25519, false);
    let cache = SignerCache::default();
    let now = Instant::now();
    let first = cache.get(spec(&key, "example.com", "s1"), DEFAULT_TTL, now).unwrap();
    let second = cache.get(spec(&key, "example.com", "s1"), DEFAULT_TTL, now).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(cache.builds(), 1);
    // Other parameters are another signer; an expired entry is rebuilt.
    cache.get(spec(&key, "example.com", "s2"), DEFAULT_TTL, now).unwrap();
    assert_eq!(cache.builds(), 2);
    let later = cache.get(spec(&key, "example.com", "s1"), DEFAULT_TTL, now + DEFAULT_TTL).unwrap();
    assert!(!Arc::ptr_eq(&first, &later));
    assert_eq!(cache.builds(), 3);
}

#[test]
fn a_missing_or_bad_key_names_the_file_and_is_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let key = TestKey { path: missing.clone(), kind: KeyKind::RsaSha256, public_b64: String::new() };
    let cache = SignerCache::default();
    let err = cache.get(spec(&key, "example.com", "s"), DEFAULT_TTL, Instant::now()).unwrap_err().to_string();
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    std::fs::write(&missing, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n").unwrap();
    let err = Signer::build(spec(&key, "example.com", "s")).unwrap_err().to_string();
    assert!(err.contains(missing.to_str().unwrap()) && !err.contains("not a key"), "{err}");
    assert_eq!(cache.builds(), 0);
}
