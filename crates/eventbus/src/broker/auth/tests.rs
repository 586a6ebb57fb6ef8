use super::*;

fn auth(text: &str) -> Authenticator {
    let config = AuthConfig::from_toml(text).expect("a valid auth file");
    Authenticator::new(Some(&config), &BrokerConfig::default()).unwrap()
}

fn file(secret: &str) -> String {
    format!(
        r#"
[[user]]
name = "procmond"
secret_sha256 = "{}"
client_ids = ["procmond-*"]
groups = ["process"]
direct = ["agent-*"]
[user.publish]
allow = ["events.process.#"]
[user.quotas]
max_pending_requests = 3

[[user]]
name = "agent"
uid = 4242
admin = true
stats = false
"#,
        hash_secret(secret.as_bytes())
    )
}

#[test]
fn without_an_auth_file_the_socket_owner_may_do_everything_but_admin() {
    let a = Authenticator::new(None, &BrokerConfig::default()).unwrap();
    let p = a.authenticate(None, Some(1000)).unwrap();
    assert_eq!(p.name, "uid:1000");
    assert!(p.perms.stats && !p.perms.admin);
    assert!(p.client_ids.allows("anything"));
    assert!(matches!(p.perms.publish, TopicRules::Any));
    assert_eq!(
        p.quotas.max_pending_requests,
        QuotaConfig::default().max_pending_requests
    );
    // Credentials are ignored: there is no one to check them against.
    assert!(a.authenticate(Some(("x", b"y")), Some(1000)).is_ok());
}

#[test]
fn users_authenticate_by_secret_or_by_uid_and_nobody_else_gets_in() {
    let a = auth(&file("s3cret"));
    let p = a
        .authenticate(Some(("procmond", b"s3cret")), Some(1))
        .unwrap();
    assert_eq!(p.name, "procmond");
    assert!(p.client_ids.allows("procmond-7") && !p.client_ids.allows("agent-1"));
    assert!(p.perms.groups.allows("process") && !p.perms.groups.allows("network"));
    assert!(p.perms.direct.allows("agent-1") && !p.perms.direct.allows("procmond-2"));
    assert!(p.perms.stats, "stats default to allowed");
    assert_eq!(p.quotas.max_pending_requests, 3);
    assert_eq!(
        p.quotas.max_queued_messages,
        QuotaConfig::default().max_queued_messages
    );
    for (user, secret) in [
        ("procmond", &b"wrong"[..]),
        ("nobody", b"s3cret"),
        ("agent", b""),
    ] {
        assert!(matches!(
            a.authenticate(Some((user, secret)), Some(4242)),
            Err(HandshakeRefusal::AuthenticationFailed)
        ));
    }
    let agent = a.authenticate(None, Some(4242)).unwrap();
    assert_eq!(agent.name, "agent");
    assert!(agent.perms.admin && !agent.perms.stats);
    assert!(matches!(
        a.authenticate(None, Some(1000)),
        Err(HandshakeRefusal::AuthenticationFailed)
    ));
    assert!(matches!(
        a.authenticate(None, None),
        Err(HandshakeRefusal::AuthenticationFailed)
    ));
}

#[test]
fn a_bad_auth_file_is_refused_with_the_reason() {
    let bad = |text: &str| match AuthConfig::from_toml(text) {
        Err(e) => e.to_string(),
        Ok(c) => panic!("accepted: {c:?}"),
    };
    assert!(bad("[[user]]\nname = \"x\"\n").contains("needs a secret_sha256, a uid"));
    assert!(bad("[[user]]\nname = \"\"\nuid = 1\n").contains("empty"));
    assert!(bad("[[user]]\nname = \"x\"\nsecret_sha256 = \"nope\"\n").contains("secret_sha256"));
    assert!(
        bad("[[user]]\nname = \"x\"\nuid = 1\n[[user]]\nname = \"x\"\nuid = 2\n").contains("twice")
    );
    assert!(
        bad("[[user]]\nname = \"x\"\nuid = 1\n[[user]]\nname = \"y\"\nuid = 1\n").contains("uid 1")
    );
    assert!(
        bad("[[user]]\nname = \"x\"\nuid = 1\n[user.publish]\nallow = [\"a.#.b\"]\n")
            .contains("publish filter")
    );
    assert!(bad("[[user]]\nname = \"x\"\nuid = 1\nsurprise = 1\n").contains("surprise"));
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        AuthConfig::load(&dir.path().join("missing.toml")),
        Err(AuthError::Read { .. })
    ));
}
