//! What every [`Bus`] must do, as one check that the in-process bus's unit
//! test and the Redis integration test (tests/bus_redis.rs) both run.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{Announce, Bus, Event};

async fn next_message(events: &mut mpsc::Receiver<Event>) -> (String, String) {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("a bus message within 5 s")
            .expect("the bus's events go on");
        if let Event::Message { channel, payload } = e {
            return (channel, payload);
        }
    }
}

/// Checks the contract of [`Bus`] with two nodes `a` and `b` of one bus,
/// under keys and channels starting with `prefix` (left empty afterwards).
/// Panics on the first broken rule.
pub async fn check(a: &dyn Bus, b: &dyn Bus, prefix: &str) {
    let mut events = a.take_events().expect("the events, once");
    assert!(a.take_events().is_none());
    let ch = format!("{prefix}chan");
    // Pub/sub: a hears what b publishes once subscribed, and not after.
    a.subscribe(&ch).await.expect("subscribe");
    b.publish(&ch, "hello").await.expect("publish");
    assert_eq!(
        next_message(&mut events).await,
        (ch.clone(), "hello".into())
    );
    let batch: Vec<(String, String)> = (0..5).map(|i| (ch.clone(), format!("m{i}"))).collect();
    b.publish_batch(&batch).await.expect("publish a batch");
    for i in 0..5 {
        assert_eq!(
            next_message(&mut events).await.1,
            format!("m{i}"),
            "in order"
        );
    }

    // Claims: one holder at a time; only the holder refreshes or releases;
    // the key goes when its time runs out.
    let k = format!("{prefix}owner");
    let short = Duration::from_millis(300);
    assert!(a.claim(&k, "a", short).await.unwrap());
    assert!(!b.claim(&k, "b", short).await.unwrap());
    assert_eq!(b.get(&k).await.unwrap().as_deref(), Some("a"));
    assert!(!b.refresh(&k, "b", short).await.unwrap());
    assert!(a.refresh(&k, "a", short).await.unwrap());
    assert!(!b.release(&k, "b").await.unwrap());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(b.get(&k).await.unwrap(), None, "expired");
    assert!(!a.refresh(&k, "a", short).await.unwrap());
    assert!(b.claim(&k, "b", short).await.unwrap());
    assert!(b.release(&k, "b").await.unwrap());
    assert_eq!(a.get(&k).await.unwrap(), None);

    // Plain keys with a TTL, found by prefix.
    let n1 = format!("{prefix}node:1");
    let n2 = format!("{prefix}node:2");
    a.put(&n1, "one", short).await.unwrap();
    b.put(&n2, "two", Duration::from_secs(5)).await.unwrap();
    let mut found = a.scan(&format!("{prefix}node:")).await.unwrap();
    found.sort();
    assert_eq!(
        found,
        vec![(n1.clone(), "one".into()), (n2.clone(), "two".into())]
    );
    assert!(a.touch(&n2, short).await.unwrap());
    assert!(!a.touch(&format!("{prefix}none"), short).await.unwrap());

    // A capped list: the cap holds, and every change is announced in order.
    let list = format!("{prefix}room");
    let ttl = Duration::from_secs(5);
    assert_eq!(
        a.join_capped(&list, "1@a", 2, ttl, &ch).await.unwrap(),
        Some(vec![])
    );
    assert_eq!(
        b.join_capped(&list, "2@b", 2, ttl, &ch).await.unwrap(),
        Some(vec!["1@a".to_string()])
    );
    assert_eq!(
        b.join_capped(&list, "3@b", 2, ttl, &ch).await.unwrap(),
        None
    );
    assert_eq!(
        Announce::parse(&next_message(&mut events).await.1),
        Some(Announce::Join {
            member: "1@a".into(),
            before: vec![]
        })
    );
    assert_eq!(
        Announce::parse(&next_message(&mut events).await.1),
        Some(Announce::Join {
            member: "2@b".into(),
            before: vec!["1@a".into()]
        })
    );
    assert!(a.leave(&list, "1@a", &ch).await.unwrap());
    assert!(!a.leave(&list, "1@a", &ch).await.unwrap(), "once");
    assert_eq!(
        Announce::parse(&next_message(&mut events).await.1),
        Some(Announce::Leave {
            member: "1@a".into()
        })
    );
    assert_eq!(a.members(&list).await.unwrap(), vec!["2@b".to_string()]);
    // Restored silently, once.
    a.restore(&list, "1@a", ttl).await.unwrap();
    a.restore(&list, "1@a", ttl).await.unwrap();
    assert_eq!(
        b.members(&list).await.unwrap(),
        vec!["2@b".to_string(), "1@a".to_string()]
    );
    assert!(b.leave(&list, "2@b", &ch).await.unwrap());
    assert!(b.leave(&list, "1@a", &ch).await.unwrap());
    for _ in 0..2 {
        next_message(&mut events).await;
    }
    // An emptied list is gone; so is all the rest once released.
    assert!(a.release(&n2, "two").await.unwrap());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(a.keys(prefix).await.unwrap(), Vec::<String>::new());

    a.unsubscribe(&ch).await.unwrap();
    b.publish(&ch, "gone").await.unwrap();
    b.subscribe(&ch).await.unwrap();
    let mut other = b.take_events().expect("b's events");
    a.publish(&ch, "to b").await.unwrap();
    assert_eq!(next_message(&mut other).await.1, "to b");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), events.recv())
            .await
            .is_err(),
        "a unsubscribed"
    );
}
