//! The sync window and the pilot list: what is outside them is neither
//! written nor deleted.

mod util;

use util::{days_from_now, wall, Env, Ev, ProfileConf};

fn event(env: &Env, id: &str, day: i64, who: &[&str]) {
    let src = env.source();
    src.event(&Ev::new(
        id,
        id,
        &wall(days_from_now(day, 9)),
        &wall(days_from_now(day, 10)),
    ));
    for p in who {
        src.event_person(id, p, None, None);
    }
}

fn window(past: u32, future: u32) -> Vec<ProfileConf> {
    vec![ProfileConf {
        past_days: past,
        future_days: future,
        ..Default::default()
    }]
}

#[test]
fn events_outside_the_window_are_neither_created_nor_deleted() {
    let env = Env::new();
    env.write_config(&window(7, 60));
    env.source().student("S1");
    event(&env, "E-SOON", 5, &["S1"]);
    event(&env, "E-LATER", 40, &["S1"]);
    event(&env, "E-FAR", 400, &["S1"]);
    event(&env, "E-LONG-AGO", -30, &["S1"]);
    let plan = env.plan("teaching");
    assert_eq!(plan["create"], 2, "{plan}");
    env.sync("teaching");
    let ids: Vec<String> = env
        .calendars("teaching")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(ids, ["E-LATER", "E-SOON"]);

    // The window shrinks: E-LATER's recorded start is now outside it.
    env.write_config(&window(7, 20));
    let plan = env.plan("teaching");
    assert_eq!(plan["left_alone"], 1, "{plan}");
    assert_eq!(plan["unchanged"], 1, "{plan}");
    // It disappears from the source: still not deleted, it is outside the window.
    env.source()
        .exec("DELETE FROM {p}events WHERE event_id = 'E-LATER'");
    let plan = env.plan("teaching");
    assert_eq!(plan["delete"], 0, "{plan}");
    assert_eq!(plan["left_alone"], 1, "{plan}");
    let r = env.sync("teaching");
    assert_eq!(r["delete"], 0, "{r}");
    let ids: Vec<String> = env
        .calendars("teaching")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        ids,
        ["E-LATER", "E-SOON"],
        "events outside the window are left alone"
    );

    // Back inside the window, the disappearance is acted on.
    env.write_config(&window(7, 60));
    let r = env.sync("teaching");
    assert_eq!(r["delete"], 1, "{r}");
    let ids: Vec<String> = env
        .calendars("teaching")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(ids, ["E-SOON"]);
}

#[test]
fn past_events_that_leave_the_window_stay() {
    let env = Env::new();
    env.write_config(&window(7, 60));
    env.source().student("S1");
    event(&env, "E-PAST", -3, &["S1"]);
    event(&env, "E-NEXT", 3, &["S1"]);
    env.sync("teaching");
    assert_eq!(env.calendars("teaching").len(), 2);
    // Time passes (the window moves on) and the source drops the old row.
    env.write_config(&window(1, 60));
    env.source()
        .exec("DELETE FROM {p}events WHERE event_id = 'E-PAST'");
    let r = env.sync("teaching");
    assert_eq!(r["delete"], 0, "{r}");
    assert_eq!(
        env.calendars("teaching").len(),
        2,
        "history is not rewritten"
    );
}

#[test]
fn a_pilot_writes_only_the_pilots_calendars() {
    let env = Env::new();
    let pilot = |list: &str| {
        vec![ProfileConf {
            extra: format!("pilot = [{list}]"),
            ..Default::default()
        }]
    };
    env.write_config(&pilot("\"S2@Uni.example\""));
    let src = env.source();
    for s in ["S1", "S2", "S3"] {
        src.student(s);
    }
    src.group("G", "All", &["S1", "S2", "S3"]);
    drop(src);
    for (i, id) in ["E1", "E2"].into_iter().enumerate() {
        event(&env, id, i as i64 + 1, &[]);
        env.source().event_group(id, "G");
    }
    let plan = env.plan("teaching");
    assert_eq!(plan["create"], 2, "{plan}");
    env.sync("teaching");
    let folders: Vec<String> = env
        .calendars("teaching")
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(folders, ["s2@uni.example", "s2@uni.example"]);

    // By person id too; earlier pilots' calendars are left alone, not deleted.
    env.write_config(&pilot("\"S3\""));
    let r = env.sync("teaching");
    assert_eq!(
        (r["create"].as_u64(), r["delete"].as_u64()),
        (Some(2), Some(0)),
        "{r}"
    );
    assert_eq!(r["left_alone"], 2, "{r}");
    let folders: Vec<String> = env
        .calendars("teaching")
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(
        folders,
        [
            "s2@uni.example",
            "s2@uni.example",
            "s3@uni.example",
            "s3@uni.example"
        ]
    );

    // Pilot over: everyone.
    env.write_config(&[ProfileConf::default()]);
    let r = env.sync("teaching");
    assert_eq!(r["create"], 2, "{r}");
    assert_eq!(env.calendars("teaching").len(), 6);
}
