//! The renewal schedule and the task that follows it.

use super::*;

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-rekey-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn schedule_from_the_consensus_with_ctors_bounds() {
    let params = |pairs: &[(&str, i32)]| -> BTreeMap<String, i32> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    let d = KeySchedule::default();
    assert_eq!((d.rotation, d.grace), (days(28), days(7)));
    let s = KeySchedule::from_params(&params(&[
        ("onion-key-rotation-days", 3),
        ("onion-key-grace-period-days", 2),
    ]));
    assert_eq!((s.rotation, s.grace), (days(3), days(2)));
    // Out of range: clamped; the grace period never exceeds the rotation.
    let s = KeySchedule::from_params(&params(&[
        ("onion-key-rotation-days", 500),
        ("onion-key-grace-period-days", 0),
    ]));
    assert_eq!((s.rotation, s.grace), (days(90), days(1)));
    let s = KeySchedule::from_params(&params(&[
        ("onion-key-rotation-days", -4),
        ("onion-key-grace-period-days", 9),
    ]));
    assert_eq!((s.rotation, s.grace), (days(1), days(1)));
}

#[test]
fn the_earliest_renewal_comes_first() {
    let t0 = SystemTime::UNIX_EPOCH + days(20_000);
    let mut keys = RelayKeys::generate(&mut rand::rng(), t0).unwrap();
    let s = KeySchedule::default();
    // New keys: the onion keys (28 days) are due before the signing key
    // (a 30-day certificate, renewed a day early).
    assert_eq!(
        next_action(&keys, s),
        (t0 + days(28), KeyAction::RotateOnion)
    );
    let short = KeySchedule {
        rotation: days(40),
        grace: days(7),
    };
    assert_eq!(
        next_action(&keys, short),
        (t0 + days(29), KeyAction::RenewSigning)
    );
    // After a rotation: the signing key (day 29), then the previous
    // ntor key (7 days after the rotation), then the next rotation.
    let t1 = t0 + days(28);
    keys.rotate_onion_keys(&mut rand::rng(), t1).unwrap();
    let (at, action) = next_action(&keys, s);
    assert_eq!(action, KeyAction::RenewSigning);
    keys.renew_signing_key(&mut rand::rng(), at).unwrap();
    assert_eq!(
        next_action(&keys, s),
        (t1 + days(7), KeyAction::ExpirePrevious)
    );
    keys.expire_previous_onion_key();
    assert_eq!(
        next_action(&keys, s),
        (t1 + days(28), KeyAction::RotateOnion)
    );
}

/// The task: keys 29 days old have their onion keys rotated (stored, the
/// node told, a descriptor asked for), then their signing key renewed
/// (stored, new link keys and a descriptor asked for), then it waits.
#[tokio::test]
async fn the_task_rotates_and_renews_what_is_due() {
    let dir = temp("task");
    // (Certificates count whole hours: two more make the renewal due.)
    let made = SystemTime::now() - days(29) - Duration::from_secs(7200);
    let keys = RelayKeys::generate(&mut rand::rng(), made).unwrap();
    keys.store(&dir).unwrap();
    let (ntor, expiry) = (keys.ntor().public, keys.signing_cert_expiry());
    let keys = Arc::new(RwLock::new(keys));
    let (to_node, mut inbox) = mpsc::channel(4);
    let (_sched_tx, schedule) = watch::channel(KeySchedule::default());
    let (republish, relink) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let task = tokio::spawn(rekey_loop(Rekey {
        keys: Arc::clone(&keys),
        dir: dir.clone(),
        schedule,
        to_node,
        republish: Arc::clone(&republish),
        relink: Arc::clone(&relink),
    }));
    let limit = Duration::from_secs(30);
    let Some(ToNode::OnionKeys(onion)) = tokio::time::timeout(limit, inbox.recv()).await.unwrap()
    else {
        panic!("the node task was not given the new onion keys");
    };
    assert_eq!(onion.ntor.len(), 2, "current and previous");
    tokio::time::timeout(limit, relink.notified())
        .await
        .expect("new link keys were not asked for");
    tokio::time::timeout(limit, republish.notified())
        .await
        .expect("no new descriptor was asked for");
    {
        let k = read(&keys);
        assert_ne!(k.ntor().public, ntor);
        assert_eq!(k.ntor_previous().unwrap().public, ntor);
        assert!(k.signing_cert_expiry() > expiry + days(20));
        assert!(
            next_action(&k, KeySchedule::default()).0 > SystemTime::now() + days(6),
            "nothing more is due for days"
        );
    }
    let stored = RelayKeys::load(&dir).unwrap();
    assert_eq!(stored.ntor().public, read(&keys).ntor().public);
    assert_eq!(stored.ntor_previous().unwrap().public, ntor);
    assert_eq!(
        stored.signing_cert_expiry(),
        read(&keys).signing_cert_expiry()
    );
    // The task ends with the node task.
    drop(inbox);
    tokio::time::timeout(limit, task).await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
