use super::*;
use edusync_core::render::RenderedEvent;
use edusync_core::timetable::EventStatus;

fn ev(profile: &str, id: &str, subject: &str) -> RenderedEvent {
    RenderedEvent {
        uid: keys::event_uid(profile, id),
        marker: keys::marker_value(profile, id),
        profile: profile.into(),
        event_id: id.into(),
        person_id: "P1".into(),
        subject: subject.into(),
        location: "Room 1".into(),
        body: String::new(),
        categories: vec!["Timetable".into()],
        start: "2026-10-01T08:00:00Z".parse().unwrap(),
        end: "2026-10-01T09:00:00Z".parse().unwrap(),
        timezone: "Europe/London".into(),
        status: EventStatus::Confirmed,
        busy: true,
        geo: None,
    }
}

fn op(kind: OpKind, e: Option<RenderedEvent>, id: &str, prior: Option<Prior>) -> CalendarOp {
    CalendarOp {
        kind,
        profile: "teaching".into(),
        person_id: "P1".into(),
        event_id: id.into(),
        calendar: "p1@example.ac.uk".into(),
        event: e,
        prior,
    }
}

use crate::Prior;

#[test]
fn create_update_delete_and_leave_personal_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let t = VdirTarget::new("vdir", dir.path().to_path_buf());
    let cal = "p1@example.ac.uk";
    fs::create_dir_all(dir.path().join(cal)).unwrap();
    let personal = dir.path().join(cal).join("dentist.ics");
    fs::write(
        &personal,
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();

    let out = t.apply(
        cal,
        &[op(
            OpKind::Create,
            Some(ev("teaching", "E1", "One")),
            "E1",
            None,
        )],
    );
    let Outcome::Written {
        remote_id,
        sequence,
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(*sequence, 0);
    // A replayed create overwrites the same file.
    let again = t.apply(
        cal,
        &[op(
            OpKind::Create,
            Some(ev("teaching", "E1", "One")),
            "E1",
            None,
        )],
    );
    assert!(matches!(again[0], Outcome::Written { .. }));
    assert_eq!(fs::read_dir(dir.path().join(cal)).unwrap().count(), 2);

    let prior = Prior {
        calendar: cal.into(),
        remote_id: Some(remote_id.clone()),
        etag: None,
        sequence: 0,
    };
    let out = t.apply(
        cal,
        &[op(
            OpKind::Update,
            Some(ev("teaching", "E1", "Two")),
            "E1",
            Some(prior.clone()),
        )],
    );
    assert!(
        matches!(out[0], Outcome::Written { sequence: 1, .. }),
        "{out:?}"
    );
    let text = fs::read_to_string(dir.path().join(cal).join(remote_id)).unwrap();
    assert!(text.contains("SUMMARY:Two") && text.contains("SEQUENCE:1"));

    assert_eq!(t.list(cal, "teaching").unwrap().len(), 1);
    assert_eq!(t.list(cal, "exams").unwrap().len(), 0);

    let out = t.apply(cal, &[op(OpKind::Delete, None, "E1", Some(prior.clone()))]);
    assert_eq!(out[0], Outcome::Deleted);
    // Deleting again is harmless.
    assert_eq!(
        t.apply(cal, &[op(OpKind::Delete, None, "E1", Some(prior))])[0],
        Outcome::Deleted
    );
    assert!(personal.exists(), "personal events are never touched");

    // A file without our marker at our name is refused, not overwritten.
    let name = VdirTarget::file_name("teaching", "E2");
    fs::write(
        dir.path().join(cal).join(&name),
        "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    let out = t.apply(
        cal,
        &[op(
            OpKind::Create,
            Some(ev("teaching", "E2", "x")),
            "E2",
            None,
        )],
    );
    assert!(
        matches!(
            out[0],
            Outcome::Failed {
                retryable: false,
                ..
            }
        ),
        "{out:?}"
    );
}

#[test]
fn cleardown_removes_only_this_profiles_events() {
    let dir = tempfile::tempdir().unwrap();
    let t = VdirTarget::new("vdir", dir.path().to_path_buf());
    let cal = "p1@example.ac.uk";
    t.apply(
        cal,
        &[op(
            OpKind::Create,
            Some(ev("teaching", "E1", "One")),
            "E1",
            None,
        )],
    );
    t.apply(
        cal,
        &[op(
            OpKind::Create,
            Some(ev("exams", "X1", "Exam")),
            "X1",
            None,
        )],
    );
    fs::write(
        dir.path().join(cal).join("mine.ics"),
        "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    assert_eq!(t.cleardown("teaching").unwrap(), 1);
    assert_eq!(fs::read_dir(dir.path().join(cal)).unwrap().count(), 2);
}

#[test]
fn temp_files_left_by_a_crash_are_removed_by_delete_and_cleardown() {
    let dir = tempfile::tempdir().unwrap();
    let t = VdirTarget::new("vdir", dir.path().to_path_buf());
    let cal = "p1@example.ac.uk";
    for id in ["E1", "E2"] {
        t.apply(
            cal,
            &[op(
                OpKind::Create,
                Some(ev("teaching", id, "One")),
                id,
                None,
            )],
        );
    }
    let folder = dir.path().join(cal);
    let tmp = |id: &str| folder.join(VdirTarget::tmp_name(&VdirTarget::file_name("teaching", id)));
    // A write killed half-way: the temporary file stays; it is not an event.
    fs::write(tmp("E1"), "BEGIN:VCALENDAR\r\nBEGIN:VEV").unwrap();
    fs::write(tmp("E2"), "BEGIN:VCALENDAR\r\nBEGIN:VEV").unwrap();
    let other = folder.join(VdirTarget::tmp_name(&VdirTarget::file_name(
        "teaching-x",
        "E1",
    )));
    fs::write(&other, "x").unwrap();
    assert_eq!(t.list(cal, "teaching").unwrap().len(), 2);
    assert!(VdirTarget::is_own_tmp(
        &VdirTarget::tmp_name(&VdirTarget::file_name("teaching", "E1")),
        "teaching"
    ));
    assert!(!VdirTarget::is_own_tmp(
        &VdirTarget::tmp_name(&VdirTarget::file_name("teaching-x", "E1")),
        "teaching"
    ));
    assert!(!VdirTarget::is_own_tmp(".dentist.ics.tmp", "teaching"));

    let out = t.apply(cal, &[op(OpKind::Delete, None, "E1", None)]);
    assert!(matches!(out[0], Outcome::Deleted), "{out:?}");
    assert!(
        !tmp("E1").exists(),
        "delete removes the event's temporary file"
    );
    assert!(tmp("E2").exists());
    assert_eq!(
        t.cleardown("teaching").unwrap(),
        1,
        "temporary files are not counted as events"
    );
    assert!(
        !tmp("E2").exists(),
        "cleardown removes the profile's temporary files"
    );
    assert!(other.exists(), "another profile's temporary file stays");
}
