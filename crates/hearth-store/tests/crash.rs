//! What a crash, a damaged file and a long-lived database leave behind: the
//! work of a killed process ends at the next start, a damaged file is refused
//! with what to do, the write-ahead log stays bounded, and a backup taken while
//! writing is a consistent copy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use hearth_store::{
    ConversationStore, JobStore, NewConversation, NewFile, NewJob, NewMessage, NewStep, Options,
    ReplyUpdate, Scope, SqliteStore, StepStatus, StoreError,
};

fn wal_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("hearth.db-wal")).map_or(0, |m| m.len())
}

/// A store dropped without `close` stands for a process killed with SIGKILL: no
/// code of it runs any more, and the kernel drops its locks.
#[tokio::test]
async fn a_killed_processs_reply_and_job_end_at_the_next_start_not_a_lease_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let (_, streaming) = common::streaming_reply(&store, "o").await;
    store
        .update_reply(
            &streaming.id,
            &ReplyUpdate {
                content: "half a".into(),
                ..ReplyUpdate::default()
            },
        )
        .await
        .unwrap();
    let job = store
        .create_job(
            "o",
            NewJob {
                prompt: "p".into(),
                image: NewFile {
                    name: "in.png".into(),
                    sha256: "aa".into(),
                    size: 1,
                    content_type: "image/png".into(),
                    step_id: None,
                },
                image_type: "png".into(),
            },
        )
        .await
        .unwrap();
    store
        .claim_next_job("worker1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let step = store
        .begin_step(
            &job.id,
            NewStep {
                kind: "vision".into(),
                attempt: 1,
                input: "i".into(),
                model: None,
            },
        )
        .await
        .unwrap();
    drop(store);

    // Both leases (30 s) still run, yet the next start ends both at once.
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let m = store.message(&streaming.id).await.unwrap().unwrap();
    assert_eq!(m.finish_reason.as_deref(), Some("interrupted"));
    assert_eq!(m.content, "half a", "what was saved is kept");
    assert_eq!(store.recover_jobs().await.unwrap(), 1);
    let steps = store.steps(&job.id).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(
        (steps[0].id.as_str(), steps[0].status()),
        (step.id.as_str(), StepStatus::Interrupted)
    );
    let again = store
        .claim_next_job("worker2", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, job.id);
    // The dead process's lock files are gone; the live one's stay.
    let locks: Vec<_> = std::fs::read_dir(dir.path().join("hearth.db-leases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(locks.len(), 2, "{locks:?}");
    assert!(locks.contains(&"worker2.lock".to_owned()), "{locks:?}");
    store.close().await;
    assert_eq!(
        std::fs::read_dir(dir.path().join("hearth.db-leases"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hearth.db"), vec![0x5a; 64 * 1024]).unwrap();
    let e = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    let s = e.to_string();
    assert!(s.contains("hearth.db is damaged"), "{s}");
    assert!(s.contains("hearth backup"), "{s}");
}

#[tokio::test]
async fn a_database_with_a_damaged_page_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    for i in 0..300 {
        let c = store
            .create_conversation(
                "o",
                NewConversation {
                    title: Some(format!("conversation {i} {}", "x".repeat(200))),
                    ..NewConversation::default()
                },
            )
            .await
            .unwrap();
        store
            .append_message(&c.id, NewMessage::user("y".repeat(500)))
            .await
            .unwrap();
    }
    store.close().await;
    let db = dir.path().join("hearth.db");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 40 * 4096, "{}", bytes.len());
    // Scribble over the middle of the file: b-tree pages of the tables.
    for b in &mut bytes[20 * 4096..24 * 4096] {
        *b = 0xa5;
    }
    std::fs::write(&db, &bytes).unwrap();
    let e = hearth_store::integrity_check(&db).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    let e = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("move"), "{e}");
}

/// The write-ahead log limit of [`small_log_store`].
const SMALL_LOG: u64 = 256 * 1024;

/// A store on `dir` whose log limit is [`SMALL_LOG`] and whose rounds (lease,
/// sweep, checkpoint) come every 100 ms, with one conversation.
async fn small_log_store(dir: &Path) -> (SqliteStore, hearth_store::Conversation) {
    let store = SqliteStore::open_with(
        dir,
        Options {
            lease: Duration::from_millis(300),
            wal_size_limit: SMALL_LOG,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let c = store
        .create_conversation("o", NewConversation::default())
        .await
        .unwrap();
    (store, c)
}

#[tokio::test]
async fn the_write_ahead_log_is_cut_back_once_a_long_reader_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (store, c) = small_log_store(dir.path()).await;
    let limit = SMALL_LOG;
    // A reader that stays in one read transaction (a slow export, a backup): no
    // checkpoint can pass it, so the log grows while it lasts.
    let url = format!("sqlite://{}", dir.path().join("hearth.db").display());
    let mut reader = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    let text = "z".repeat(8 * 1024);
    for _ in 0..300 {
        store
            .append_message(&c.id, NewMessage::user(&text))
            .await
            .unwrap();
    }
    let grown = wal_size(dir.path());
    assert!(grown > 4 * limit, "the log did not grow: {grown}");
    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    drop(reader);

    // Traffic goes on; the log comes back under the limit and stays there.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        store
            .append_message(&c.id, NewMessage::user("more"))
            .await
            .unwrap();
        if wal_size(dir.path()) <= limit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log stayed at {} bytes",
            wal_size(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A clean stop leaves the log empty: the data folder is the one file.
    store.close().await;
    assert_eq!(wal_size(dir.path()), 0);
}

/// Readers that overlap without a gap (two connections of their own, each in a
/// read transaction of 60 ms, starting 30 ms apart): at every instant one reads
/// the log, so SQLite alone never starts it over and it would grow for as long as
/// they last, while a writer writes as fast as it can. The store's checkpoint
/// holds its own queries back for a moment, waits for those readers, and empties
/// the log (once a second at most: in production the rounds are further apart,
/// and the log is bounded by its limit and one round of writes); the writer is
/// never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_stays_bounded_under_readers_that_always_overlap() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (store, c) = small_log_store(dir.path()).await;
    let limit = SMALL_LOG;
    let url = format!("sqlite://{}", dir.path().join("hearth.db").display());
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for first_delay in [0, 30] {
        let (url, stop, reads) = (url.clone(), stop.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(first_delay)).await;
            while !stop.load(Ordering::Relaxed) {
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(60)).await;
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let text = "z".repeat(8 * 1024);
    // Times the log went from past its limit to nearly empty: about once a
    // second (never, before the gate). Written until it was three times, for at
    // most 15 s, so that a machine busy with other tests has the time.
    let (mut emptied, mut past) = (0, false);
    let start = Instant::now();
    while emptied < 3 && start.elapsed() < Duration::from_secs(15) {
        store
            .append_message(&c.id, NewMessage::user(&text))
            .await
            .unwrap();
        let size = wal_size(dir.path());
        if size > limit {
            past = true;
        } else if past && size < limit / 4 {
            emptied += 1;
            past = false;
        }
    }
    let took = start.elapsed().as_secs_f32();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    // The readers were never held up for long: ten reads a second at least
    // (each takes 60 ms, two at a time).
    let reads = reads.load(Ordering::Relaxed);
    assert!(
        reads as f32 > 10.0 * took,
        "the readers did not keep reading: {reads} reads in {took:.1} s"
    );
    assert!(
        emptied >= 3,
        "the log was emptied {emptied} times in {took:.1} s while readers overlapped"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writing_is_consistent_and_not_overwritten_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let c = store
        .create_conversation("o", NewConversation::default())
        .await
        .unwrap();
    store
        .append_message(&c.id, NewMessage::user("before"))
        .await
        .unwrap();
    let writer = {
        let store = store.clone();
        let id = c.id.clone();
        tokio::spawn(async move {
            for i in 0..400 {
                store
                    .append_message(&id, NewMessage::user(format!("message {i}")))
                    .await
                    .unwrap();
            }
        })
    };
    let db = dir.path().join("hearth.db");
    let out = dir.path().join("copies/hearth-backup.db");
    let b = hearth_store::backup(&db, &out, false).await.unwrap();
    assert_eq!(b.path, out);
    assert_eq!(b.bytes, std::fs::metadata(&out).unwrap().len());
    writer.await.unwrap();
    hearth_store::integrity_check(&out).await.unwrap();

    // The copy opens as a store: its messages are a gapless prefix of the live ones.
    let copy_dir = dir.path().join("restored");
    std::fs::create_dir_all(&copy_dir).unwrap();
    std::fs::copy(&out, copy_dir.join("hearth.db")).unwrap();
    let copy = SqliteStore::open(&copy_dir).await.unwrap();
    let copied = copy.messages(&c.id).await.unwrap();
    let live = store.messages(&c.id).await.unwrap();
    assert!(!copied.is_empty() && copied.len() <= live.len());
    for (i, m) in copied.iter().enumerate() {
        assert_eq!(m.seq, i64::try_from(i).unwrap());
        assert_eq!(m.content, live[i].content);
    }
    assert!(
        copy.conversation(&Scope::All, &c.id)
            .await
            .unwrap()
            .is_some()
    );
    // No leftovers beside it.
    let names: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["hearth-backup.db"]);

    // An existing file is kept unless forced.
    let e = hearth_store::backup(&db, &out, false).await.unwrap_err();
    assert!(matches!(e, StoreError::BackupExists { .. }), "{e:?}");
    assert!(e.to_string().contains("--force"), "{e}");
    let again = hearth_store::backup(&db, &out, true).await.unwrap();
    assert!(again.bytes > 0);
    let e = hearth_store::backup(&dir.path().join("nothing.db"), &out, true)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NoDatabase { .. }), "{e:?}");
}
