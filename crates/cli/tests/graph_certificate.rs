//! The `graph` target with a certificate credential, end to end: the built
//! binary signs a client assertion with the key in the PEM file named by
//! `client_certificate_env`, the emulator verifies it as the Microsoft
//! identity platform does, and the sync runs; a certificate the app
//! registration does not know, a file without a certificate and a variable
//! that is not set are each explained.

mod graph_common;
mod util;

use edusync_testkit::graph::GraphEmulatorConfig;
use edusync_testkit::{TEST_CERT_PEM, TEST_RSA_KEY_PEM};
use graph_common::{expect, GraphEnv, CERT_ENV};
use util::{days_from_now, wall, Ev};

const ALICE: &str = "alice@uni.example";
const BOB: &str = "bob@uni.example";

fn timetable(g: &GraphEnv) {
    let src = g.source();
    src.person("S1", "student", Some(ALICE), None);
    src.person("S2", "student", Some(BOB), None);
    src.group("G-A", "Group A", &["S1", "S2"]);
    for (id, day) in [("E1", 3), ("E2", 4)] {
        src.event(&Ev::new(
            id,
            "Organic Chemistry",
            &wall(days_from_now(day, 9)),
            &wall(days_from_now(day, 10)),
        ));
        src.event_group(id, "G-A");
    }
}

fn key_and_cert() -> String {
    format!("{TEST_RSA_KEY_PEM}\n{TEST_CERT_PEM}")
}

#[test]
fn a_certificate_credential_gets_tokens_and_syncs() {
    let g = GraphEnv::new(&[ALICE, BOB]);
    g.write_certificate_config(&key_and_cert());
    timetable(&g);
    let c = g.env.config_arg();
    let check = g.env.ok(&["check", "--config", &c]);
    assert!(
        check.stdout.contains("token issued"),
        "{}",
        check.describe()
    );

    let r = g.sync();
    assert_eq!(r["create"], 4, "{r}");
    assert_eq!(
        g.holdings(&[ALICE, BOB]),
        expect(&[(ALICE, &["E1", "E2"]), (BOB, &["E1", "E2"])])
    );
    assert!(g.emu.stats().tokens_issued >= 1);
    g.emu.assert_no_violations();
}

#[test]
fn a_certificate_the_app_does_not_know_is_refused_with_the_services_error() {
    let g = GraphEnv::with_config(GraphEmulatorConfig {
        client_certificates: Vec::new(),
        ..GraphEmulatorConfig::with_users([ALICE, BOB])
    });
    g.write_certificate_config(&key_and_cert());
    timetable(&g);
    let c = g.env.config_arg();
    let out = g.env.expect(1, &["check", "--config", &c]);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("AADSTS700027"), "{}", out.describe());
    assert!(text.contains("The key was not found"), "{}", out.describe());
    assert!(
        text.contains("uploaded under Certificates & secrets"),
        "{}",
        out.describe()
    );
    assert_eq!(g.emu.stats().tokens_issued, 0);
    assert!(g.holdings(&[ALICE]).values().all(|ids| ids.is_empty()));
}

#[test]
fn a_file_without_a_certificate_and_an_unset_variable_are_explained() {
    let g = GraphEnv::new(&[ALICE, BOB]);
    let pem = g.write_certificate_config(TEST_RSA_KEY_PEM);
    timetable(&g);
    let c = g.env.config_arg();
    let out = g
        .env
        .expect(1, &["sync", "--config", &c, "--profile", "teaching"]);
    assert!(
        out.stderr.contains(&format!(
            "certificate file {} (named by ${CERT_ENV}): there is a private key but no `-----BEGIN CERTIFICATE-----` block",
            pem.display()
        )),
        "{}",
        out.describe()
    );

    // A variable that is not set: the message names it, the key and the config file.
    let unset = "EDUSYNC_TEST_UNSET_GRAPH_CERT";
    g.write_config_with("", &format!("client_certificate_env = \"{unset}\""));
    let out = g
        .env
        .expect(1, &["sync", "--config", &c, "--profile", "teaching"]);
    assert!(
        out.stderr.contains(&format!(
            "environment variable {unset} is not set (named by `profiles[0].targets[0].client_certificate_env` in {c})"
        )),
        "{}",
        out.describe()
    );
    assert_eq!(g.emu.stats().tokens_issued, 0);
}
