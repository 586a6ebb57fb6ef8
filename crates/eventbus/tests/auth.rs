//! Identities over real sockets: an auth file's users connect with their
//! credentials and nobody else does, and a live client id stays its holder's.

use eventbus::broker::hash_secret;
use eventbus::client::{ConnectError, ConnectionEvent, Credentials};
use eventbus::proto::ErrorCode;
use eventbus::{Client, Topic};
use eventbus_harness::{DEADLINE, TestBroker};

/// A broker with an auth file, and the directory that holds the file.
async fn broker_with_users() -> (TestBroker, tempfile::TempDir) {
    let dir = eventbus_harness::embedded::short_temp_dir();
    let file = dir.path().join("auth.toml");
    std::fs::write(
        &file,
        format!(
            "[[user]]\nname = \"procmond\"\nsecret_sha256 = \"{}\"\nclient_ids = [\"procmond-*\"]\n\
             [user.publish]\nallow = [\"events.process.#\"]\n",
            hash_secret(b"t0ken")
        ),
    )
    .unwrap();
    let broker = TestBroker::start_with(|c| c.auth_file = Some(file)).await;
    (broker, dir)
}

fn refused_code(result: Result<Client, ConnectError>) -> ErrorCode {
    match result {
        Err(ConnectError::Refused(r)) => r.code,
        Err(other) => panic!("not refused by the broker: {other}"),
        Ok(_) => panic!("connected"),
    }
}

#[tokio::test]
async fn users_of_the_auth_file_connect_with_their_credentials_and_nobody_else() {
    let (broker, _auth_dir) = broker_with_users().await;
    let good = broker
        .options("procmond-1")
        .credentials(Credentials::new("procmond", "t0ken"));
    let client = Client::connect(good).await.expect("the user connects");
    client
        .publish_confirmed(&Topic::new("events.process.start").unwrap(), "x")
        .await
        .expect("an allowed topic");
    let refused = client
        .publish_confirmed(&Topic::new("events.net.up").unwrap(), "x")
        .await;
    assert_eq!(
        refused,
        Err(eventbus::client::PublishError::PermissionDenied {
            topic: "events.net.up".to_owned(),
            client_id: String::new(),
        })
    );
    let wrong = broker
        .options("procmond-2")
        .credentials(Credentials::new("procmond", "guess"));
    assert_eq!(
        refused_code(Client::connect(wrong).await),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        refused_code(Client::connect(broker.options("procmond-3")).await),
        ErrorCode::PermissionDenied,
        "no credentials, and the uid is no user's"
    );
    let other_id = broker
        .options("agent-1")
        .credentials(Credentials::new("procmond", "t0ken"));
    assert_eq!(
        refused_code(Client::connect(other_id).await),
        ErrorCode::PermissionDenied
    );
    client.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_live_client_id_stays_its_holders_across_a_reconnect() {
    let broker = TestBroker::start().await;
    let holder = broker.client("procmond-1").await;
    let mut events = holder.connection_events();
    assert_eq!(
        refused_code(Client::connect(broker.options("procmond-1")).await),
        ErrorCode::DuplicateClientId
    );
    // The holder's link is cut but its old connection is not yet gone from
    // the broker's view: restarting the broker cuts every link at once.
    let broker = broker.restart().await;
    let reconnected = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Ok(ConnectionEvent::Reconnected { .. }) = events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(reconnected.is_ok(), "the holder reconnects");
    // Still its own: an impostor is refused again.
    assert_eq!(
        refused_code(Client::connect(broker.options("procmond-1")).await),
        ErrorCode::DuplicateClientId
    );
    holder.close().await;
    broker.shutdown().await;
}
