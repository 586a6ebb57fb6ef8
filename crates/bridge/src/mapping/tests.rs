use super::*;

fn topic(s: &str) -> Topic {
    Topic::new(s).unwrap()
}

#[test]
fn export_maps_segments_and_wildcards() {
    let map = ExportMap::new("events.#", "", "fleet.node1").unwrap();
    assert_eq!(map.subject_filter(), "fleet.node1.events.>");
    assert_eq!(
        map.subject_for(&topic("events.process.start")).unwrap(),
        "fleet.node1.events.process.start"
    );
    let map = ExportMap::new("events.+.start", "events", "").unwrap();
    assert_eq!(map.subject_filter(), "*.start");
    assert_eq!(
        map.subject_for(&topic("events.net.start")).unwrap(),
        "net.start"
    );
    let map = ExportMap::new("a.b.#", "a.b", "Fleet-A").unwrap();
    assert_eq!(map.subject_filter(), "Fleet-A.>");
}

#[test]
fn export_refuses_what_cannot_work() {
    assert!(matches!(
        ExportMap::new("events.#.x", "", ""),
        Err(MappingError::Filter(_))
    ));
    assert!(matches!(
        ExportMap::new("events.#", "other", ""),
        Err(MappingError::PrefixMismatch { .. })
    ));
    assert!(matches!(
        ExportMap::new("+.x", "+", ""),
        Err(MappingError::PrefixMismatch { .. })
    ));
    assert!(matches!(
        ExportMap::new("events", "events.more", "p"),
        Err(MappingError::PrefixMismatch { .. })
    ));
    assert_eq!(
        ExportMap::new("events", "events", "").unwrap_err(),
        MappingError::Empty
    );
    for bad in [
        "a..b", "a.*", "a.>", "$JS.API", "sp ace", "tab\t", ".lead", "trail.",
    ] {
        assert!(
            matches!(
                ExportMap::new("events.#", "", bad),
                Err(MappingError::Subject { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_topic_the_filter_does_not_match_or_nothing_left_is_unmappable() {
    let map = ExportMap::new("events.#", "events", "").unwrap();
    assert!(matches!(
        map.subject_for(&topic("other.x")),
        Err(Unmappable::NotUnderPrefix { .. })
    ));
    assert!(matches!(
        map.subject_for(&topic("events")),
        Err(Unmappable::Empty { .. })
    ));
}

#[test]
fn import_maps_subjects_to_topics() {
    let map = ImportMap::new("fleet.task.>", "fleet.task", "control.collector.task").unwrap();
    assert_eq!(
        map.topic_for("fleet.task.process").unwrap().as_str(),
        "control.collector.task.process"
    );
    let map = ImportMap::new("fleet.*.events.>", "fleet", "").unwrap();
    assert_eq!(
        map.topic_for("fleet.n1.events.x.y").unwrap().as_str(),
        "n1.events.x.y"
    );
}

#[test]
fn import_refuses_subjects_that_can_never_be_topics() {
    for (subject, remove, add) in [
        ("Fleet.>", "", ""),
        ("fleet.Task", "", ""),
        ("fleet.ta sk", "", ""),
        ("fleet.x", "", "Bad"),
        ("fleet.x", "", "a..b"),
    ] {
        assert!(
            matches!(
                ImportMap::new(subject, remove, add),
                Err(MappingError::NotATopicSegment { .. })
            ),
            "{subject} {remove} {add}"
        );
    }
    for subject in ["", "a..b", "a.>.b", "$SYS.>", "a.b."] {
        assert!(
            matches!(
                ImportMap::new(subject, "", "x"),
                Err(MappingError::Subject { .. } | MappingError::NotATopicSegment { .. })
            ),
            "{subject:?}"
        );
    }
    assert!(matches!(
        ImportMap::new("fleet.*.x", "fleet.*", ""),
        Err(MappingError::PrefixMismatch { .. })
    ));
    assert!(matches!(
        ImportMap::new("a.b.c.d.e.>", "", "f.g.h"),
        Err(MappingError::TooManySegments { min: 9, max: 8 })
    ));
    assert_eq!(
        ImportMap::new("a.b", "a.b", "").unwrap_err(),
        MappingError::Empty
    );
    assert_eq!(
        ImportMap::new("_sys.>", "", "").unwrap_err(),
        MappingError::Reserved
    );
    assert_eq!(
        ImportMap::new("x.>", "x", "_sys").unwrap_err(),
        MappingError::Reserved
    );
}

#[test]
fn hostile_subjects_are_unmappable_not_fatal() {
    let map = ImportMap::new("fleet.>", "fleet", "").unwrap();
    let long = format!("fleet.{}", vec!["a"; 20].join("."));
    for subject in [
        "fleet.UPPER",
        "fleet.a b",
        "fleet.ü",
        long.as_str(),
        "fleet._sys.stats",
    ] {
        assert!(map.topic_for(subject).is_err(), "{subject}");
    }
    assert!(matches!(
        map.topic_for("fleet"),
        Err(Unmappable::Empty { .. })
    ));
    let huge = format!("fleet.{}", "a".repeat(10_000));
    assert!(matches!(map.topic_for(&huge), Err(Unmappable::Topic(_))));
}

#[test]
fn serve_maps_requests_both_ways() {
    let map = ServeMap::new("control.collector.task.#", "fleet.req", "").unwrap();
    assert_eq!(map.subject_filter(), "fleet.req.>");
    let t = topic("control.collector.task.process");
    assert_eq!(
        map.subject_for(&t),
        "fleet.req.control.collector.task.process"
    );
    assert_eq!(map.topic_for(&map.subject_for(&t)).unwrap(), t);
    assert!(matches!(
        map.topic_for("fleet.req.other.topic"),
        Err(Unmappable::NotServed { .. })
    ));
    assert!(matches!(
        map.topic_for("fleet.reqx.control.collector.task.p"),
        Err(Unmappable::NotUnderPrefix { .. })
    ));
    assert!(ServeMap::new("x.#", "", "").is_err());
    assert!(ServeMap::new("x.#", "a.>", "").is_err());
    assert_eq!(
        ServeMap::new("_sys.#", "a", "").unwrap_err(),
        MappingError::Reserved
    );
    assert!(matches!(
        ServeMap::new("x.#", "a", "a.b"),
        Err(MappingError::Group { .. })
    ));
    let with_group = ServeMap::new("x.#", "a", "g").unwrap();
    assert_eq!(with_group.group().unwrap().as_str(), "g");
}
