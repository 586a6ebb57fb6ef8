//! The checker on synthetic histories: one per finding, plus the clean case.

use super::*;

/// A task that went through the whole life: published, accepted, delivered to
/// `collector` at `started_us`, acked.
fn complete(h: &History, id: &str, collector: &str, started_us: u64) {
    h.published(id);
    h.accepted(id);
    h.delivered(id, collector, started_us);
    h.acked(id);
}

#[test]
fn a_complete_history_in_order_is_clean() {
    let h = History::new();
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        complete(&h, id, "procmond-1", 10 + i as u64);
    }
    let v = h.check(Order::Fifo);
    assert!(v.is_clean(), "{v}");
    assert_eq!((v.published, v.completed), (3, 3));
    assert_eq!(h.completed(), 3);
}

#[test]
fn an_accepted_task_never_acked_is_lost() {
    let h = History::new();
    complete(&h, "a", "c1", 1);
    h.published("b");
    h.accepted("b");
    h.delivered("b", "c1", 2);
    h.published("c");
    h.accepted("c");
    let v = h.check(Order::Any);
    assert_eq!(v.lost, ["b", "c"]);
    assert!(!v.is_clean());
}

#[test]
fn a_refused_publish_is_not_lost_but_a_timed_out_request_is() {
    let h = History::new();
    h.published("refused");
    h.error("refused", "queue full");
    h.published("timed-out");
    h.accepted("timed-out");
    h.error("timed-out", "no reply within 1s");
    let v = h.check(Order::Any);
    assert_eq!(v.lost, ["timed-out"]);
    assert_eq!(v.errors.len(), 2);
}

#[test]
fn a_retry_that_succeeds_is_complete_with_its_error_kept() {
    let h = History::new();
    h.published("a");
    h.accepted("a");
    h.error("a", "connection closed");
    h.delivered("a", "c2", 5);
    h.acked("a");
    let v = h.check(Order::Any);
    assert!(v.is_clean(), "{v}");
    assert_eq!(v.errors, [("a".to_owned(), "connection closed".to_owned())]);
}

#[test]
fn a_second_ack_or_a_delivery_after_the_ack_is_a_duplicate() {
    let h = History::new();
    complete(&h, "twice-acked", "c1", 1);
    h.acked("twice-acked");
    complete(&h, "redelivered", "c1", 2);
    h.delivered("redelivered", "c2", 3);
    complete(&h, "fine", "c1", 4);
    let v = h.check(Order::Any);
    assert_eq!(v.duplicated_after_ack, ["twice-acked", "redelivered"]);
    assert!(v.lost.is_empty());
}

#[test]
fn a_task_starting_after_a_later_one_is_out_of_order_only_under_fifo() {
    let h = History::new();
    complete(&h, "t0", "c1", 100);
    complete(&h, "t1", "c1", 300);
    complete(&h, "t2", "c1", 200);
    complete(&h, "t3", "c1", 400);
    assert!(h.check(Order::Any).is_clean());
    let v = h.check(Order::Fifo);
    assert_eq!(
        v.out_of_order,
        [Inversion {
            task_id: "t1".to_owned(),
            overtaken_by: "t2".to_owned(),
        }]
    );
}

#[test]
fn acceptance_order_not_log_order_defines_fifo() {
    let h = History::new();
    // Published in one order, accepted (by the broker) in the other.
    h.published("x");
    h.published("y");
    h.accepted("y");
    h.accepted("x");
    h.delivered("y", "c1", 1);
    h.delivered("x", "c1", 2);
    h.acked("y");
    h.acked("x");
    let v = h.check(Order::Fifo);
    assert!(v.is_clean(), "{v}");
}

#[test]
fn events_for_unknown_tasks_and_flagged_events_are_unexpected() {
    let h = History::new();
    h.delivered("ghost", "c1", 1);
    h.acked("ghost");
    h.published("a");
    h.acked("a");
    complete(&h, "b", "c1", 2);
    h.record("b", Event::Unexpected("reply for task \"z\"".to_owned()));
    let v = h.check(Order::Any);
    let found: Vec<(&str, &str)> = v
        .unexpected
        .iter()
        .map(|(id, why)| (id.as_str(), why.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("ghost", "delivered but never published"),
            ("a", "acked but never delivered"),
            ("b", "reply for task \"z\""),
        ]
    );
}

#[test]
fn record_all_keeps_a_tasks_events_together() {
    let h = History::new();
    h.published("t1");
    h.record_all(
        "t1",
        [
            Event::Accepted,
            Event::Delivered {
                collector: "w-1".into(),
                started_us: 2,
            },
            Event::Acked,
        ],
    );
    assert!(h.check(Order::Any).is_clean());
    assert_eq!(h.completed(), 1);
}

#[test]
fn the_summary_names_counts_and_first_findings() {
    let h = History::new();
    for i in 0..8 {
        h.published(&format!("t{i}"));
        h.accepted(&format!("t{i}"));
    }
    let text = h.check(Order::Any).to_string();
    assert!(text.contains("lost 8"), "{text}");
    assert!(text.contains("and 3 more"), "{text}");
}
