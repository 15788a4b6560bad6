use super::*;

fn claims(exp: i64) -> Claims {
    Claims {
        iss: "http://x/fhir".into(),
        aud: "http://x/fhir".into(),
        sub: "app".into(),
        client_id: "app".into(),
        scope: "system/*.rs".into(),
        patient: None,
        encounter: None,
        fhir_user: None,
        iat: 100,
        exp,
        jti: "j1".into(),
    }
}

fn keys() -> (SigningKey, impl Fn(&str) -> Option<DecodingKey>) {
    let key = SigningKey::generate().unwrap();
    let jwk = key.public.clone();
    let kid = key.kid.clone();
    (key, move |k: &str| {
        (k == kid).then(|| DecodingKey::from_jwk(&jwk).unwrap())
    })
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_signed_token_verifies_and_its_claims_come_back() {
    let (key, key_of) = keys();
    let t = sign(&claims(1_000), &key).unwrap();
    assert_eq!(check(&t, &key_of, "http://x/fhir", 500), Ok(claims(1_000)));
    assert_eq!(check(&t, &key_of, "http://x/fhir/", 500), Ok(claims(1_000)));
    assert_eq!(
        check(&t, &key_of, "http://x/fhir", 1_000),
        Err(Refusal::Expired)
    );
    assert_eq!(
        check(&t, &key_of, "http://other/fhir", 500),
        Err(Refusal::WrongAudience)
    );
}

#[test]
fn forged_tokens_are_refused() {
    let (key, key_of) = keys();
    let t = sign(&claims(1_000), &key).unwrap();
    let parts: Vec<&str> = t.split('.').collect();
    // Another key, same kid.
    let (other, _) = keys();
    let mut forged = claims(1_000);
    forged.scope = "system/*.cruds".into();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    let f = jsonwebtoken::encode(&header, &forged, &other.encoding).unwrap();
    assert_eq!(
        check(&f, &key_of, "http://x/fhir", 500),
        Err(Refusal::BadSignature)
    );
    // Claims changed under the same signature.
    let body = b64(serde_json::to_string(&forged).unwrap().as_bytes());
    let swapped = format!("{}.{body}.{}", parts[0], parts[2]);
    assert_eq!(
        check(&swapped, &key_of, "http://x/fhir", 500),
        Err(Refusal::BadSignature)
    );
    // alg none, and HS256 keyed with the public key.
    let none = format!(
        "{}.{}.",
        b64(format!(r#"{{"alg":"none","kid":"{}"}}"#, key.kid).as_bytes()),
        parts[1]
    );
    assert_eq!(
        check(&none, &key_of, "http://x/fhir", 500),
        Err(Refusal::Malformed)
    );
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(key.kid.clone());
    let public = serde_json::to_vec(&key.public).unwrap();
    let h = jsonwebtoken::encode(
        &hs,
        &claims(1_000),
        &jsonwebtoken::EncodingKey::from_secret(&public).unwrap(),
    )
    .unwrap();
    assert_eq!(
        check(&h, &key_of, "http://x/fhir", 500),
        Err(Refusal::Malformed)
    );
    // An unknown kid, and no kid.
    let mut unknown = Header::new(Algorithm::ES256);
    unknown.kid = Some("nobody".into());
    let u = jsonwebtoken::encode(&unknown, &claims(1_000), &key.encoding).unwrap();
    assert_eq!(
        check(&u, &key_of, "http://x/fhir", 500),
        Err(Refusal::UnknownKey)
    );
    let n = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims(1_000),
        &key.encoding,
    )
    .unwrap();
    assert_eq!(
        check(&n, &key_of, "http://x/fhir", 500),
        Err(Refusal::UnknownKey)
    );
    for junk in ["", "a.b.c", "not a token", "....."] {
        assert_eq!(
            check(junk, &key_of, "http://x/fhir", 500),
            Err(Refusal::Malformed)
        );
    }
}

#[test]
fn the_cache_serves_a_token_until_it_expires() {
    let v = Verified::default();
    let h = Verified::hash("t");
    v.put(h, Arc::new(claims(10)), 0);
    assert!(v.get(&h, 9).is_some());
    assert!(v.get(&h, 10).is_none());
    assert!(v.get(&Verified::hash("u"), 0).is_none());
}
