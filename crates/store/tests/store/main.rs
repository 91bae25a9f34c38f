//! The store as the desktop app uses it: real files, closed and reopened like app restarts,
//! and files a newer Confab, a hand edit or a bad disk left behind.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use confab_proto::{SpaceState, SpaceSummary};
use confab_store::{SCHEMA_VERSION, Store, StoreError, default_path};
use rusqlite::Connection;

const S: &str = "https://confab.example";

/// A directory line as the app receives it: decoded from the server's JSON.
fn summary(id: &str, host: &str) -> SpaceSummary {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "title": format!("{host} is on"),
        "host": host,
        "listeners": 2,
    }))
    .unwrap()
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path()
        .join("profiles")
        .join("default")
        .join("confab.sqlite3")
}

/// Every file in the directory holding `path`, with its bytes.
fn snapshot(path: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn an_empty_file_is_migrated_in_wal_mode_and_reopening_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"").unwrap();

    let mut store = Store::open(&path).unwrap();
    store.set_display_name(Some("Ada")).unwrap();
    let mode: String = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(store);
    assert_eq!(user_version(&path), SCHEMA_VERSION);

    for _ in 0..3 {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.display_name().unwrap().as_deref(), Some("Ada"));
    }
    assert_eq!(user_version(&path), SCHEMA_VERSION);
}

#[test]
fn everything_survives_an_app_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let mut store = Store::open(&path).unwrap();
        assert!(store.follow(S, "ada", 100).unwrap());
        assert!(store.follow(S, "bob", 110).unwrap());
        store
            .record_spaces(S, &[summary("aaaaaaaaaaaa", "ada")], 200)
            .unwrap();
        assert!(store.should_notify(S, "ada", 200, 60).unwrap());
        store.set_server_url(Some(S)).unwrap();
    }

    let mut store = Store::open(&path).unwrap();
    let hosts: Vec<(String, i64, Option<i64>)> = store
        .followed(S)
        .unwrap()
        .into_iter()
        .map(|h| (h.host, h.followed_at, h.last_live_at))
        .collect();
    assert_eq!(
        hosts,
        [("ada".into(), 100, Some(200)), ("bob".into(), 110, None)]
    );
    assert!(!store.follow(S, "ada", 300).unwrap(), "still followed");
    assert_eq!(store.server_url().unwrap().as_deref(), Some(S));
    // The dedupe window and "seen live" both outlive the restart: no second notification.
    assert!(!store.should_notify(S, "ada", 230, 60).unwrap());
    assert!(
        store
            .record_spaces(S, &[summary("aaaaaaaaaaaa", "ada")], 230)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_newer_schema_is_refused_and_the_files_are_left_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let mut store = Store::open(&path).unwrap();
        store.follow(S, "ada", 1).unwrap();
    }
    // A future Confab migrated the file further.
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let before = snapshot(&path);

    for _ in 0..2 {
        let err = Store::open(&path).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported, .. }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
        assert!(text.contains("newer Confab"), "{text}");
        assert_eq!(snapshot(&path), before);
    }
}

#[test]
fn a_newer_file_in_rollback_journal_mode_is_not_switched_to_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("confab.sqlite3");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 42;")
            .unwrap();
    }
    let before = snapshot(&path);
    assert!(matches!(
        Store::open(&path),
        Err(StoreError::SchemaTooNew { found: 42, .. })
    ));
    assert_eq!(snapshot(&path), before);
}

#[test]
fn newly_live_spaces_are_those_of_followed_hosts_seen_for_the_first_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut store = Store::open(&path).unwrap();
    let ada1 = summary("aaaaaaaaaaaa", "ada");
    let bob = summary("bbbbbbbbbbbb", "bob");
    let ada2 = summary("cccccccccccc", "ada");
    let both = [bob.clone(), ada1.clone()];
    let poll = |store: &mut Store, live: &[SpaceSummary], now| -> Vec<String> {
        let new = store.record_spaces(S, live, now).unwrap();
        new.into_iter().map(|s| s.id.to_string()).collect()
    };

    // Not followed: recorded, not returned.
    assert!(poll(&mut store, std::slice::from_ref(&bob), 10).is_empty());

    // Followed: returned once...
    store.follow(S, "ada", 15).unwrap();
    assert_eq!(poll(&mut store, &both, 20), ["aaaaaaaaaaaa"]);
    // ...and not again while it stays live, even across a restart.
    assert!(poll(&mut store, &both, 30).is_empty());
    drop(store);
    let mut store = Store::open(&path).unwrap();
    assert!(poll(&mut store, &both, 40).is_empty());

    // Ended, then a new space by the same host: returned.
    assert!(poll(&mut store, std::slice::from_ref(&bob), 50).is_empty());
    let seen = store.last_spaces_of_followed(S).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].state, SpaceState::Ended);
    assert_eq!(seen[0].ended_at, Some(50));
    assert_eq!(poll(&mut store, &[ada2], 60), ["cccccccccccc"]);

    // The followed host's list shows the live one first, then the ended one; bob's is absent.
    let seen: Vec<(String, SpaceState)> = store
        .last_spaces_of_followed(S)
        .unwrap()
        .into_iter()
        .map(|s| (s.id.to_string(), s.state))
        .collect();
    assert_eq!(
        seen,
        [
            ("cccccccccccc".into(), SpaceState::Live),
            ("aaaaaaaaaaaa".into(), SpaceState::Ended),
        ]
    );
}

#[test]
fn a_host_restarting_five_times_in_a_minute_notifies_once() {
    let mut store = Store::open_in_memory().unwrap();
    store.follow(S, "ada", 0).unwrap();
    let ids = [
        "aaaaaaaaaaaa",
        "bbbbbbbbbbbb",
        "cccccccccccc",
        "dddddddddddd",
        "eeeeeeeeeeee",
    ];
    let mut notified = Vec::new();
    // Each restart is a new space id, live on one poll and gone on the next.
    for (i, id) in ids.iter().enumerate() {
        let t = 1_000 + 12 * i as i64;
        for space in store.record_spaces(S, &[summary(id, "ada")], t).unwrap() {
            if store.should_notify(S, &space.host, t, 60).unwrap() {
                notified.push((t, space.id.to_string()));
            }
        }
        store.record_spaces(S, &[], t + 6).unwrap();
    }
    assert_eq!(notified, [(1_000, "aaaaaaaaaaaa".to_string())]);

    // After the window, the next new space notifies again.
    let t = 1_060;
    let new = store
        .record_spaces(S, &[summary("ffffffffffff", "ada")], t)
        .unwrap();
    assert_eq!(new.len(), 1);
    assert!(store.should_notify(S, "ada", t, 60).unwrap());
}

#[test]
fn profile_names_are_one_path_component() {
    for bad in [
        "",
        "..",
        ".",
        "/",
        "../../etc",
        "a/b",
        "a\\b",
        "Work",
        "x y",
        "prôfile",
    ] {
        assert!(
            matches!(default_path(bad), Err(StoreError::BadProfile(_))),
            "{bad:?} accepted"
        );
    }
    assert!(matches!(
        default_path(&"a".repeat(33)),
        Err(StoreError::BadProfile(_))
    ));
    let path = default_path("work-2_b").unwrap();
    assert!(
        path.ends_with("profiles/work-2_b/confab.sqlite3"),
        "{}",
        path.display()
    );
    assert!(path.is_absolute(), "{}", path.display());
}

#[test]
fn unicode_host_names_are_kept_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let hosts = ["Zoë", "élodie", "李雷", "🎙️ radio", "Ada", "ada"];
    {
        let mut store = Store::open(&path).unwrap();
        for host in hosts {
            assert!(store.follow(S, host, 1).unwrap());
        }
        let new = store
            .record_spaces(S, &[summary("aaaaaaaaaaaa", "李雷")], 10)
            .unwrap();
        assert_eq!(new.len(), 1);
    }
    let store = Store::open(&path).unwrap();
    let names: Vec<String> = store
        .followed(S)
        .unwrap()
        .into_iter()
        .map(|h| h.host)
        .collect();
    // Ignoring case (Unicode lowercase), then by exact spelling.
    assert_eq!(names, ["Ada", "ada", "Zoë", "élodie", "李雷", "🎙️ radio"]);
    // "Zoë" and "zoë" are different hosts; NFC and NFD spellings too.
    assert!(store.is_following(S, "Zoë").unwrap());
    assert!(!store.is_following(S, "zoë").unwrap());
    assert!(!store.is_following(S, "e\u{301}lodie").unwrap());
    assert_eq!(store.last_spaces_of_followed(S).unwrap()[0].host, "李雷");
}

#[test]
fn sql_looking_input_is_stored_literally() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let server = "https://x.example/'; DELETE FROM follows; --";
    let host = "Robert'); DROP TABLE follows;--";
    let title = "\" OR 1=1; UPDATE spaces SET state = 'ended' --";
    {
        let mut store = Store::open(&path).unwrap();
        store.follow(server, host, 1).unwrap();
        store.follow(server, "%", 1).unwrap();
        let mut space = summary("aaaaaaaaaaaa", host);
        space.title = title.into();
        assert_eq!(store.record_spaces(server, &[space], 5).unwrap().len(), 1);
        store
            .set_setting("key' OR '1'='1", "value'); DROP TABLE settings;--")
            .unwrap();
        store.set_display_name(Some("'; --")).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert!(store.is_following(server, host).unwrap());
    // `%` and `_` are not patterns: nothing matches by LIKE.
    assert!(!store.is_following(server, "anything").unwrap());
    assert!(!store.is_following(S, host).unwrap());
    let names: Vec<String> = store
        .followed(server)
        .unwrap()
        .into_iter()
        .map(|h| h.host)
        .collect();
    assert_eq!(names, ["%", host]);
    let seen = store.last_spaces_of_followed(server).unwrap();
    assert_eq!(seen[0].title, title);
    assert_eq!(seen[0].state, SpaceState::Live);
    assert_eq!(
        store.get_setting("key' OR '1'='1").unwrap().as_deref(),
        Some("value'); DROP TABLE settings;--")
    );
    assert_eq!(store.get_setting("key").unwrap(), None);
    assert_eq!(store.display_name().unwrap().as_deref(), Some("'; --"));
}

#[test]
fn hand_edited_rows_are_skipped_and_the_rest_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let mut store = Store::open(&path).unwrap();
        store.follow(S, "ada", 1).unwrap();
        store
            .record_spaces(S, &[summary("aaaaaaaaaaaa", "ada")], 10)
            .unwrap();
    }
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             INSERT INTO spaces VALUES
                ('https://confab.example', 'NOT AN ID', 't', 'ada', 1, 'live', 5, 5, NULL),
                ('https://confab.example', 'bbbbbbbbbbbb', 't', 'ada', 1, 'paused', 5, 5, NULL),
                ('https://confab.example', 'cccccccccccc', 't', 'ada', -4, 'live', 5, 5, NULL),
                ('https://confab.example', 'dddddddddddd', 't', 'ada', 99999999999, 'live', 5, 5, NULL);",
        )
        .unwrap();
    }

    let mut store = Store::open(&path).unwrap();
    let ids: Vec<String> = store
        .last_spaces_of_followed(S)
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(ids, ["aaaaaaaaaaaa"]);
    assert_eq!(store.followed(S).unwrap()[0].last_live_at, Some(10));

    // A poll still works, and ends the unreadable live rows along with the rest.
    assert!(store.record_spaces(S, &[], 20).unwrap().is_empty());
    let live: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM spaces WHERE state = 'live'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(live, 0);
    let new = store
        .record_spaces(S, &[summary("eeeeeeeeeeee", "ada")], 30)
        .unwrap();
    assert_eq!(new.len(), 1);
}

#[test]
fn a_damaged_file_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let mut store = Store::open(&path).unwrap();
        for i in 0..200 {
            store.follow(S, &format!("host{i:03}"), i).unwrap();
            store
                .set_setting(&format!("k{i}"), &"v".repeat(50))
                .unwrap();
        }
        store
            .record_spaces(S, &[summary("aaaaaaaaaaaa", "host001")], 10)
            .unwrap();
    }
    let clean = std::fs::read(&path).unwrap();
    assert!(
        clean.len() > 4 * 4096,
        "want several pages, got {}",
        clean.len()
    );

    // Scribble over every page but the first, one at a time and then all at once.
    let page = 4096;
    let mut damaged_files = Vec::new();
    for p in 1..clean.len() / page {
        let mut bytes = clean.clone();
        for (j, b) in bytes[p * page..(p + 1) * page].iter_mut().enumerate() {
            *b = (j * 31 + p * 7) as u8;
        }
        damaged_files.push(bytes);
    }
    let mut all = clean.clone();
    for (j, b) in all[page..].iter_mut().enumerate() {
        *b = (j * 13) as u8;
    }
    damaged_files.push(all);

    let mut errors = 0;
    for bytes in damaged_files {
        std::fs::write(&path, &bytes).unwrap();
        let Ok(mut store) = Store::open(&path) else {
            errors += 1;
            continue;
        };
        let results = [
            store.followed(S).map(drop),
            store.last_spaces_of_followed(S).map(drop),
            store.is_following(S, "host001").map(drop),
            store.get_setting("k1").map(drop),
            store
                .record_spaces(S, &[summary("bbbbbbbbbbbb", "host002")], 20)
                .map(drop),
            store.should_notify(S, "host002", 20, 60).map(drop),
            store.follow(S, "new", 20).map(drop),
        ];
        errors += results.iter().filter(|r| r.is_err()).count();
    }
    // Damage was noticed somewhere (SQLite reported it), and nothing panicked.
    assert!(errors > 0);
}
