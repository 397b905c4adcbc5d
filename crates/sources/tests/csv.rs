//! The CSV source: one UTF-8 file with a header row per view.

use std::path::Path;

use edusync_config::SourceUrl;
use edusync_core::model::{columns, VIEWS};
use edusync_sources::{probe, read};

fn write_all(dir: &Path, skip: Option<&str>) {
    for base in VIEWS {
        if Some(base) == skip {
            continue;
        }
        let mut cols: Vec<&str> = columns(base).to_vec();
        cols.reverse(); // any column order
        cols.push("extra");
        std::fs::write(
            dir.join(format!("tt_{base}.csv")),
            format!("{}\n", cols.join(",")),
        )
        .unwrap();
    }
}

#[test]
fn reads_quoted_fields_a_bom_and_empty_fields_as_null() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), None);
    std::fs::write(
        dir.path().join("tt_people.csv"),
        "\u{feff}Person_ID,kind,email,display_name\r\n42,student,a@b.ac.uk,\r\n7,staff,l@b.ac.uk,\"Smith, Łukasz \"\"Luke\"\"\"\n",
    )
    .unwrap();
    let url = SourceUrl::Csv(dir.path().to_path_buf());
    let snap = read(&url, "tt_").unwrap();
    assert_eq!(snap.people.len(), 2);
    assert_eq!(snap.people[0].person_id.as_deref(), Some("42"));
    assert_eq!(snap.people[0].display_name, None);
    assert_eq!(
        snap.people[1].display_name.as_deref(),
        Some("Smith, Łukasz \"Luke\"")
    );
    let p = probe(&url, "tt_").unwrap();
    assert_eq!(p.rows[0], ("tt_people".to_string(), 2));
}

#[test]
fn missing_files_columns_and_bad_bytes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_all(dir.path(), Some("events"));
    let url = SourceUrl::Csv(dir.path().to_path_buf());
    let e = read(&url, "tt_").unwrap_err().to_string();
    assert!(
        e.contains("tt_events.csv (view tt_events) does not exist; export the view there"),
        "{e}"
    );

    std::fs::write(
        dir.path().join("tt_events.csv"),
        "event_id,title,starts_at\n",
    )
    .unwrap();
    let e = read(&url, "tt_").unwrap_err().to_string();
    assert!(
        e.ends_with(
            "view tt_events has no column event_type (text); the source contract requires it"
        ),
        "{e}"
    );

    std::fs::write(
        dir.path().join("tt_people.csv"),
        b"person_id,kind,email,display_name\n1,student,a@b,ok\n2,student,b@b,\xff\xfe\n".as_slice(),
    )
    .unwrap();
    let e = read(&url, "tt_").unwrap_err().to_string();
    assert!(
        e.contains("tt_people.csv line 3: column display_name is not UTF-8"),
        "{e}"
    );

    let e = read(&SourceUrl::Csv(dir.path().join("nope")), "tt_")
        .unwrap_err()
        .to_string();
    assert!(e.contains("the folder does not exist"), "{e}");
}
