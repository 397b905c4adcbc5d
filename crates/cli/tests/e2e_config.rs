//! Config mistakes: `check` exits 1 naming the file and the line; a wrong
//! profile name lists the profiles there are.

mod util;

use util::{Env, ProfileConf};

/// A valid config with `bad` inserted as a line of the `[[profiles]]` table,
/// and the line number it lands on.
fn with_bad_line(env: &Env, bad: &str) -> usize {
    env.write_config(&[ProfileConf {
        extra: bad.to_string(),
        ..Default::default()
    }]);
    let text = std::fs::read_to_string(&env.config).unwrap();
    text.lines().position(|l| l == bad).expect("line written") + 1
}

#[test]
fn check_names_the_file_and_line_of_a_bad_value() {
    let cases = [
        ("cancelled = \"sometimes\"", "cancelled"),
        ("drift = \"maybe\"", "drift"),
        ("schedule = \"every now and then\"", "schedule"),
    ];
    for (bad, key) in cases {
        let env = Env::new();
        util::Source::open(&env.source_path());
        let line = with_bad_line(&env, bad);
        let c = env.config_arg();
        let out = env.expect(1, &["check", "--config", &c]);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains(&c),
            "{bad}: message names the file{}",
            out.describe()
        );
        assert!(
            all.contains(&format!("line {line}")),
            "{bad}: message names line {line}{}",
            out.describe()
        );
        assert!(
            all.contains(key),
            "{bad}: message names the key{}",
            out.describe()
        );
        // Every other command refuses the config the same way.
        let out = env.expect(1, &["plan", "--config", &c, "--profile", "teaching"]);
        assert!(
            out.stderr.contains(&format!("line {line}")),
            "{}",
            out.describe()
        );
    }
}

#[test]
fn check_reports_syntax_errors_unknown_keys_and_a_missing_source() {
    let env = Env::new();
    let c = env.config_arg();
    env.write_config_text(
        "state = \"sqlite://./state.db\"\n\n[[profiles]]\nname = \"teaching\nx = 1\n",
    );
    let out = env.expect(1, &["check", "--config", &c]);
    assert!(
        out.stdout.contains(&c) && out.stdout.contains("line 4"),
        "{}",
        out.describe()
    );

    env.write_config(&[ProfileConf::default()]);
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("past_days", "pats_days");
    env.write_config_text(&text);
    let line = text
        .lines()
        .position(|l| l.starts_with("pats_days"))
        .unwrap()
        + 1;
    let out = env.expect(1, &["check", "--config", &c]);
    assert!(
        out.stdout.contains("pats_days") && out.stdout.contains(&format!("line {line}")),
        "{}",
        out.describe()
    );

    // A valid config whose source file does not exist: check reaches out and says so.
    env.write_config(&[ProfileConf::default()]);
    let out = env.expect(1, &["check", "--config", &c]);
    assert!(
        out.stdout.contains("tt.db") && out.stdout.contains("does not exist"),
        "{}",
        out.describe()
    );
    // Once the source is there, all is well.
    util::Source::open(&env.source_path());
    env.ok(&["check", "--config", &c]);

    // A missing config file.
    let out = env.expect(1, &["check", "--config", "nope.toml"]);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("nope.toml"),
        "{}",
        out.describe()
    );
}

#[test]
fn an_unknown_profile_lists_the_profiles() {
    let env = Env::new();
    env.write_config(&[
        ProfileConf::default(),
        ProfileConf {
            name: "exams".into(),
            prefix: "ex_".into(),
            ..Default::default()
        },
    ]);
    util::Source::open(&env.source_path());
    let c = env.config_arg();
    for args in [
        vec!["plan", "--config", &c, "--profile", "teachng"],
        vec!["sync", "--config", &c, "--profile", "teachng"],
        vec!["cleardown", "--config", &c, "--profile", "teachng", "--yes"],
    ] {
        let out = env.cmd(&args).run();
        assert_ne!(out.code(), Some(0), "{}", out.describe());
        assert!(out.stderr.contains("\"teachng\""), "{}", out.describe());
        assert!(
            out.stderr.contains("teaching, exams"),
            "lists the profiles{}",
            out.describe()
        );
    }
}
