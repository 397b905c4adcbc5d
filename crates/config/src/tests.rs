use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/edusync/edusync.toml"), text)
}

fn err(text: &str) -> String {
    parse(text)
        .expect_err("config should be refused")
        .to_string()
}

const MINIMAL: &str = r#"
[[profiles]]
name = "teaching"
[profiles.source]
url = "sqlite://./timetable.db"
[[profiles.targets]]
kind = "vdir"
path = "./calendars"
"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.state,
        StateUrl::Sqlite(PathBuf::from("/etc/edusync/edusync-state.db"))
    );
    assert_eq!(c.server.listen, "127.0.0.1:8080");
    let p = &c.profiles[0];
    assert_eq!(p.timezone_name, "Europe/London");
    assert_eq!(p.schedule, Duration::from_secs(600));
    assert_eq!(p.max_event_hours, 24);
    assert_eq!(p.source.prefix, "tt_");
    assert_eq!(
        p.source.url,
        SourceUrl::Sqlite(PathBuf::from("/etc/edusync/./timetable.db"))
    );
    assert_eq!((p.window.past_days, p.window.future_days), (7, 365));
    assert_eq!(p.guard.max_delete_percent, 10.0);
    assert_eq!(p.categories, vec!["Timetable".to_string()]);
    assert_eq!(p.targets[0].name, "vdir");
    assert_eq!(p.cancelled, CancelledMode::Remove);
    assert_eq!(p.drift, DriftMode::Restore);
}

#[test]
fn full_interface_example_parses() {
    let text = r#"
state = "postgres://edusync:hunter2@db.example.ac.uk/edusync"
[server]
listen = "0.0.0.0:8080"
[hub]
root = "./collected"
[[profiles]]
name = "teaching"
timezone = "Europe/London"
schedule = "10m"
max_event_hours = 24
[profiles.source]
url = "sqlite://./timetable.db"
prefix = "tt_"
[profiles.window]
past_days = 7
future_days = 365
[profiles.guard]
max_delete_percent = 10
[[profiles.targets]]
kind = "graph"
tenant_id = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-000000000000"
client_secret_env = "EDUSYNC_GRAPH_SECRET"
calendar = "Timetable"
authority_url = "https://login.microsoftonline.com"
graph_url = "https://graph.microsoft.com"
[[profiles.targets]]
kind = "caldav"
calendar_url = "https://dav.example.ac.uk/{email}/timetable/"
username = "edusync"
password_env = "EDUSYNC_CALDAV_PASSWORD"
[[profiles.targets]]
kind = "google"
credentials_file_env = "EDUSYNC_GOOGLE_KEY"
calendar = "Timetable"
token_url = "https://oauth2.googleapis.com/token"
api_url = "https://www.googleapis.com/calendar/v3"
[[profiles.targets]]
kind = "vdir"
path = "./calendars"
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.profiles[0].targets.len(), 4);
    let summary = c.redacted_summary();
    assert!(!summary.contains("hunter2"), "{summary}");
    assert!(summary.contains("edusync:***@db.example.ac.uk"));
}

/// Each bad config and the exact message it must produce.
#[test]
fn bad_configs_name_key_file_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "[[profiles]]\nname = \"t\"\nschedule = \"soon\"\n",
            "config file /etc/edusync/edusync.toml, line 3: profiles[0].schedule = \"soon\" is not a duration; write e.g. \"90s\", \"10m\", \"1h\"",
        ),
        (
            "[[profiles]]\nname = \"t\"\ntimezone = \"Mars/Olympus\"\n",
            "config file /etc/edusync/edusync.toml, line 3: profiles[0].timezone = \"Mars/Olympus\" is not a known IANA time zone; use a name like \"Europe/London\"",
        ),
        (
            "state = \"sqlite://s.db\"\nstate_password_env = \"PW\"\n",
            "config file /etc/edusync/edusync.toml, line 2: state_password_env applies only to a postgres:// state; remove it (a SQLite state has no password)",
        ),
        (
            "state = \"postgres://edusync@db/edusync\"\nstate_password_env = \" \"\n",
            "config file /etc/edusync/edusync.toml, line 2: state_password_env is empty; name the environment variable that holds the state database's password, e.g. state_password_env = \"EDUSYNC_STATE_PASSWORD\"",
        ),
        (
            "state = \"redis://x\"\n",
            "config file /etc/edusync/edusync.toml, line 1: `state` = \"redis://x\" is not a supported state URL; use sqlite://PATH or postgres://USER@HOST/DB",
        ),
        (
            "[[profiles]]\nname = \"t\"\n[profiles.source]\nurl = \"sqlite://t.db\"\n[[profiles.targets]]\nkind = \"exchange\"\n",
            "config file /etc/edusync/edusync.toml, line 6: profile \"t\": profiles[0].targets[0].kind = \"exchange\" is not a target kind; use one of \"graph\", \"caldav\", \"google\", \"vdir\"",
        ),
        (
            "[[profiles]]\nname = \"t\"\n[profiles.source]\nurl = \"sqlite://t.db\"\n[[profiles.targets]]\nkind = \"graph\"\ntenant_id = \"x\"\n",
            "config file /etc/edusync/edusync.toml, line 5: profile \"t\": profiles[0].targets[0] (kind = \"graph\") needs `client_id`; the application (client) id of the app registration",
        ),
        (
            "[[profiles]]\nname = \"t\"\n[profiles.source]\nurl = \"sqlite://t.db\"\n[[profiles.targets]]\nkind = \"graph\"\ntenant_id = \"x\"\nclient_id = \"y\"\n",
            "config file /etc/edusync/edusync.toml, line 5: profile \"t\": profiles[0].targets[0] (kind = \"graph\") needs `client_secret_env` or `client_certificate_env`: the name of the environment variable holding the client secret, or the path of a PEM file with the app's certificate and private key",
        ),
        (
            "[[profiles]]\nname = \"t\"\n[profiles.source]\nurl = \"sqlite://t.db\"\n[[profiles.targets]]\nkind = \"graph\"\ntenant_id = \"x\"\nclient_id = \"y\"\nclient_secret_env = \"S\"\nclient_certificate_env = \"C\"\n",
            "config file /etc/edusync/edusync.toml, line 5: profile \"t\": profiles[0].targets[0] (kind = \"graph\") sets both `client_secret_env` and `client_certificate_env`; keep exactly one (a certificate is the stronger credential)",
        ),
        (
            "[[profiles]]\nname = \"t\"\n[profiles.source]\nurl = \"sqlite://t.db\"\n[[profiles.targets]]\nkind = \"graph\"\ntenant_id = \"x\"\nclient_id = \"y\"\nclient_certificate_env = \" \"\n",
            "config file /etc/edusync/edusync.toml, line 5: profile \"t\": profiles[0].targets[0] (kind = \"graph\") needs `client_certificate_env`; the name of the environment variable holding the path of the PEM file with the certificate and its private key",
        ),
        (
            "[[profiles]]\nname = \"t\"\n[profiles.source]\nurl = \"sqlite://t.db\"\n[profiles.guard]\nmax_delete_percent = 150\n[[profiles.targets]]\nkind = \"vdir\"\npath = \"c\"\n",
            "config file /etc/edusync/edusync.toml, line 6: profile \"t\": guard.max_delete_percent = 150 must be between 0 and 100",
        ),
        (
            "[[profiles]]\nname = \"t\"\nblackout = [\"01:00-03:30\",\n  \"25:00-26:00\"]\n",
            "config file /etc/edusync/edusync.toml, line 4: profiles[0].blackout[1] = \"25:00-26:00\" is not a time window; write \"HH:MM-HH:MM\" in the profile's time zone, e.g. \"01:00-03:30\" (it may cross midnight: \"23:00-01:00\")",
        ),
        (
            "[[profiles]]\nname = \"t\"\nschedul = \"10m\"\n",
            "config file /etc/edusync/edusync.toml, line 3: unknown field `schedul`, expected one of `name`, `timezone`, `schedule`, `max_event_hours`, `source`, `window`, `guard`, `targets`, `pilot`, `cancelled`, `drift`, `categories`, `templates`, `blackout`",
        ),
        (
            "[[profiles]]\nname = \"t\"\n[profiles.source]\nurl = \"sqlite://t.db\"\n[[profiles.targets]]\nkind = \"caldav\"\ncalendar_url = \"https://dav/x/\"\n",
            "config file /etc/edusync/edusync.toml, line 7: profile \"t\": profiles[0].targets[0].calendar_url must contain {email} or {person_id} so each person gets their own calendar",
        ),
        (
            "[[profiles]]\nname = \"t\"\n[profiles.source]\nurl = \"sqlite://t.db\"\npassword_env = \"PW\"\n",
            "config file /etc/edusync/edusync.toml, line 5: profile \"t\": source.password_env applies only to postgres:// and mysql:// sources; remove it",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&err(text), want, "config:\n{text}");
    }
}

#[test]
fn source_password_env_is_kept_by_name() {
    let c = Config::parse(
        Path::new("/etc/edusync/edusync.toml"),
        "[[profiles]]\nname = \"t\"\n[profiles.source]\nurl = \"postgres://edusync@db/tt\"\npassword_env = \"TT_PW\"\n[[profiles.targets]]\nkind = \"vdir\"\npath = \"c\"\n",
    )
    .unwrap();
    let env = c.profiles[0].source.password_env.as_ref().unwrap();
    assert_eq!(
        (env.var.as_str(), env.key.as_str()),
        ("TT_PW", "profiles[0].source.password_env")
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
    assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("0s"), None);
    assert_eq!(parse_duration("5 minutes"), None);
    assert_eq!(parse_duration("m"), None);
}

#[test]
fn url_redaction() {
    assert_eq!(redact_url("postgres://u:p@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
}

#[test]
fn missing_secret_env_is_explained() {
    let key = EnvKey {
        var: "EDUSYNC_TEST_SURELY_UNSET_VAR".into(),
        key: "profiles[0].targets[0].client_secret_env".into(),
        config: PathBuf::from("e.toml"),
    };
    let e = key.read().unwrap_err();
    assert_eq!(e.to_string(), "environment variable EDUSYNC_TEST_SURELY_UNSET_VAR is not set (named by `profiles[0].targets[0].client_secret_env` in e.toml); export it before running edusync");
}

#[test]
fn the_example_config_is_valid() {
    let text = include_str!("../../../edusync.example.toml");
    let c = Config::parse(Path::new("/srv/edusync/edusync.toml"), text).unwrap();
    assert_eq!(c.profiles[0].name, "teaching");
    assert_eq!(c.hub.root, PathBuf::from("/srv/edusync/./collected"));
}

#[test]
fn hub_collection_keys() {
    let ok = "[hub]\nroot = \"c\"\nquota_bytes = 1000\nsilent_after = \"36h\"\nserver_days = [\"1mon\", \"-1FRI\"]\n";
    let c = Config::parse(Path::new("/x/e.toml"), ok).unwrap();
    assert_eq!(c.hub.quota_bytes, Some(1000));
    assert_eq!(c.hub.silent_after, Duration::from_secs(36 * 3600));
    assert_eq!(
        c.hub.server_days,
        vec!["1MON".to_string(), "-1FRI".to_string()]
    );
    let d = Config::parse(Path::new("/x/e.toml"), "state = \"sqlite://s.db\"\n").unwrap();
    assert_eq!(
        d.hub.server_days,
        vec!["2FRI".to_string(), "4FRI".to_string()]
    );
    assert_eq!(d.hub.quota_bytes, None);
    let bad = "[hub]\nroot = \"c\"\nserver_days = [\"2FRI\",\n  \"6FRI\"]\n";
    assert_eq!(
        Config::parse(Path::new("e.toml"), bad).unwrap_err().to_string(),
        "config file e.toml, line 4: hub.server_days: \"6FRI\" is not a day of the month; write the week (1-5, or -1 for the last) and the weekday, e.g. \"2FRI\" or \"-1MON\""
    );
}

#[test]
fn blackout_windows_parse_and_cross_midnight() {
    use crate::Blackout;
    let b = Blackout::parse("01:00-03:30").unwrap();
    assert_eq!((b.start, b.end), (60, 210));
    assert!(b.contains(60) && b.contains(209) && !b.contains(210) && !b.contains(59));
    let n = Blackout::parse("23:00-01:00").unwrap();
    assert!(n.contains(23 * 60) && n.contains(0) && n.contains(59) && !n.contains(60));
    assert_eq!(n.to_string(), "23:00-01:00");
    assert_eq!(Blackout::parse("22:00-24:00").unwrap().end, 1440);
    for bad in [
        "",
        "1-2",
        "01:00",
        "01:00-01:00",
        "24:00-01:00",
        "01:60-02:00",
        "1:5-2:00",
    ] {
        assert!(Blackout::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn state_password_comes_from_the_named_environment_variable() {
    let text = "state = \"postgres://edusync@db.example.ac.uk/edusync\"\nstate_password_env = \"EDUSYNC_TEST_STATE_PW_7\"\n";
    let c = Config::parse(Path::new("/etc/edusync/edusync.toml"), text).unwrap();
    assert_eq!(
        c.state_password_env.as_ref().unwrap().var,
        "EDUSYNC_TEST_STATE_PW_7"
    );
    assert!(c
        .redacted_summary()
        .contains("state_password_env = \"EDUSYNC_TEST_STATE_PW_7\""));
    let err = c.state_password().unwrap_err().to_string();
    assert_eq!(
        err,
        "environment variable EDUSYNC_TEST_STATE_PW_7 is not set (named by `state_password_env` in /etc/edusync/edusync.toml); export it before running edusync"
    );
    std::env::set_var("EDUSYNC_TEST_STATE_PW_7", "s3cret");
    assert_eq!(c.state_password().unwrap().as_deref(), Some("s3cret"));
    let none = Config::parse(Path::new("/x/e.toml"), "state = \"postgres://u@h/d\"\n").unwrap();
    assert_eq!(none.state_password().unwrap(), None);
}

#[test]
fn graph_certificate_credential() {
    let text = "[[profiles]]\nname = \"t\"\n[profiles.source]\nurl = \"sqlite://t.db\"\n[[profiles.targets]]\nkind = \"graph\"\ntenant_id = \"x\"\nclient_id = \"y\"\nclient_certificate_env = \"EDUSYNC_GRAPH_CERT\"\n";
    let c = Config::parse(Path::new("/etc/edusync/edusync.toml"), text).unwrap();
    let TargetKind::Graph(g) = &c.profiles[0].targets[0].kind else {
        panic!("not a graph target")
    };
    assert_eq!(
        g.credential,
        GraphCredentialConfig::Certificate(EnvKey {
            var: "EDUSYNC_GRAPH_CERT".into(),
            key: "profiles[0].targets[0].client_certificate_env".into(),
            config: PathBuf::from("/etc/edusync/edusync.toml"),
        })
    );
    let summary = c.redacted_summary();
    assert!(
        summary.contains("client_certificate_env = \"EDUSYNC_GRAPH_CERT\" # value hidden"),
        "{summary}"
    );
    assert!(!summary.contains("client_secret_env"), "{summary}");
}
