//! The device key: kept in a real Secret Service (gnome-keyring on a private session bus) when
//! there is one, in a 0600 file when there is none; the same key on every load; refused when
//! the file is damaged or readable by others; and it registers and signs in on a real server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use confab_client::identity::{DeviceKey, IdentityError, KeyHome, key_file};
use confab_testkit::desktop::inside_desktop;

/// Re-runs `test` with no session bus to find a keychain on; returns whether we are inside.
fn without_keychain(test: &str) -> bool {
    const MARK: &str = "CONFAB_TEST_NO_KEYCHAIN";
    if std::env::var_os(MARK).is_some() {
        return true;
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(MARK, "1")
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/confab-test-bus",
        )
        .status()
        .unwrap();
    assert!(status.success(), "{test} failed without a keychain");
    false
}

#[test]
fn with_no_keychain_the_key_is_a_0600_file_and_stays_the_same() {
    if !without_keychain("with_no_keychain_the_key_is_a_0600_file_and_stays_the_same") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(&dir.path().join("profile"));
    let key = DeviceKey::load_or_create("test-profile", &file).unwrap();
    assert_eq!(key.home(), &KeyHome::File(file.clone()));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = DeviceKey::load_or_create("test-profile", &file).unwrap();
    assert_eq!(again.public_key(), key.public_key());
    // Debug output never shows the secret half.
    let secret = std::fs::read(&file).unwrap();
    assert!(!format!("{key:?}").contains(&format!("{:?}", &secret[..8])));

    // Readable by others: refused, the file left as it is.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        DeviceKey::load_or_create("test-profile", &file),
        Err(IdentityError::Exposed { mode: 0o644, .. })
    ));
    assert_eq!(std::fs::read(&file).unwrap(), secret);
    // Damaged: refused, not replaced.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&file, b"short").unwrap();
    assert!(matches!(
        DeviceKey::load_or_create("test-profile", &file),
        Err(IdentityError::Damaged(_))
    ));
    assert_eq!(std::fs::read(&file).unwrap(), b"short");
}

#[test]
fn with_a_secret_service_the_key_lives_in_the_keychain() {
    if !inside_desktop("with_a_secret_service_the_key_lives_in_the_keychain") {
        return;
    }
    // A real gnome-keyring on this test's private session bus, its login keyring unlocked. Its
    // keyrings live in a directory of this test's own: a login keyring left in the user's data
    // directory with another password would make the daemon prompt, and nobody answers.
    let keyrings = tempfile::tempdir().unwrap();
    let mut daemon = Command::new("gnome-keyring-daemon")
        .args(["--unlock", "--components=secrets"])
        .env("XDG_DATA_HOME", keyrings.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gnome-keyring-daemon (apt install gnome-keyring)");
    daemon
        .stdin
        .take()
        .unwrap()
        .write_all(b"test-password")
        .unwrap();
    let out = daemon.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");

    let dir = tempfile::tempdir().unwrap();
    let file = key_file(dir.path());
    let key = DeviceKey::load_or_create("keychain-profile", &file).unwrap();
    assert_eq!(key.home(), &KeyHome::Keychain("keychain-profile".into()));
    assert!(!file.exists(), "no file when the keychain holds the key");
    let again = DeviceKey::load_or_create("keychain-profile", &file).unwrap();
    assert_eq!(again.public_key(), key.public_key());
    // The keychain really holds it: read it back without our code.
    let stored = keyring::Entry::new("confab", "keychain-profile")
        .unwrap()
        .get_secret()
        .unwrap();
    assert_eq!(stored.len(), 32);
    // Another profile is another identity.
    let other =
        DeviceKey::load_or_create("other-profile", &key_file(&dir.path().join("o"))).unwrap();
    assert_ne!(other.public_key(), key.public_key());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_key_registers_and_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let config = confab_server::ServerConfig::new(dir.path().join("server"))
        .with_listen("127.0.0.1:0".parse().unwrap());
    let server = confab_server::start(config).await.unwrap();
    let url = server.url();
    let http = reqwest::Client::new();
    // A file key (the test must not touch the developer's own keychain).
    let file = key_file(&dir.path().join("profile"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    {
        let mut f = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(f.write(true).create_new(true), 0o600);
        f.open(&file).unwrap().write_all(&[42u8; 32]).unwrap();
    }
    let key = DeviceKey::load_or_create("unused", &file).unwrap();
    let registered = key
        .register(&http, &url, "Grace", "Grace H.")
        .await
        .unwrap();
    assert_eq!(registered.user.handle, "grace");
    let signed_in = key.sign_in(&http, &url).await.unwrap();
    assert_eq!(signed_in.user, registered.user);
    // A second registration of the same handle is refused with the server's code.
    let other = DeviceKey::load_or_create("unused", &key_file(&dir.path().join("b")));
    let other = other.unwrap();
    match other.register(&http, &url, "grace", "Not Grace").await {
        Err(confab_client::identity::AccountCallError::Refused(e)) => {
            assert_eq!(e.code, confab_proto::ErrorCode::NotAllowed);
        }
        r => panic!("expected a refusal, got {r:?}"),
    }
    server.shutdown().await;
}
