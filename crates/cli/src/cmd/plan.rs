use std::process::ExitCode;

use anyhow::Result;
use edusync_core::guard::Verdict;
use serde_json::json;

use super::common::{self, Format};
use crate::output::n;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: crate::ConfigArg,
    /// The profile to plan.
    #[arg(long)]
    pub profile: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Show what one person's calendar should hold and what would change in it (person id or email).
    #[arg(long, value_name = "ID_OR_EMAIL")]
    pub person: Option<String>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let config = common::load(&a.config.config)?;
    let profile = common::profile(&config, &a.profile)?;
    let store = common::store(&config)?;
    let plan = edusync_engine::plan(profile, store.as_ref(), jiff::Timestamp::now())?;
    let c = plan.counts;
    let quarantined = plan.quarantined().len() as u64;
    let (guard, hold_reason) = match &plan.verdict {
        Verdict::Apply => ("apply", None),
        Verdict::Hold { reason } => ("hold", Some(reason.clone())),
    };
    if a.format == Format::Json {
        let targets: Vec<_> = plan
            .targets
            .iter()
            .map(|(name, p)| {
                let c = p.counts();
                json!({"target": name, "create": c.create, "update": c.update, "delete": c.delete, "unchanged": c.unchanged, "left_alone": c.left_alone})
            })
            .collect();
        let mut out = json!({
            "profile": profile.name,
            "create": c.create,
            "update": c.update,
            "delete": c.delete,
            "unchanged": c.unchanged,
            "quarantined": quarantined,
            "left_alone": c.left_alone,
            "guard": guard,
            "hold_reason": hold_reason,
            "source": {"people": plan.desire.tt.people.len(), "events": plan.desire.tt.events.len(), "entries": plan.desire.attendance.len()},
            "targets": targets,
            "quarantine": plan.quarantined().iter().take(1000).map(|q| json!({"view": q.view, "row": q.row, "reason": q.reason})).collect::<Vec<_>>(),
        });
        if let Some(who) = &a.person {
            out["person"] = person_json(&plan, who)?;
        }
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "profile {}: plan (dry run — no calendar was touched)",
        profile.name
    );
    println!(
        "  source: {} people, {} events, {} calendar entries; {} rows quarantined",
        n(plan.desire.tt.people.len() as u64),
        n(plan.desire.tt.events.len() as u64),
        n(plan.desire.attendance.len() as u64),
        n(quarantined)
    );
    for (name, p) in &plan.targets {
        let c = p.counts();
        println!(
            "  target {name}: create {}, update {}, delete {}, unchanged {}, left alone {}",
            n(c.create),
            n(c.update),
            n(c.delete),
            n(c.unchanged),
            n(c.left_alone)
        );
    }
    println!(
        "  total: create {}, update {}, delete {}, unchanged {}, quarantined {}",
        n(c.create),
        n(c.update),
        n(c.delete),
        n(c.unchanged),
        n(quarantined)
    );
    if let Some(r) = hold_reason {
        println!("  deletion guard: a sync would HOLD its deletes for approval: {r}");
    }
    if quarantined > 0 {
        println!("quarantined rows (first 20 of {}):", n(quarantined));
        for q in plan.quarantined().iter().take(20) {
            println!("  {q}");
        }
    }
    if let Some(who) = &a.person {
        print_person(&plan, who)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn find(plan: &edusync_engine::ProfilePlan, who: &str) -> Result<u32> {
    plan.desire.tt.find_person(who).ok_or_else(|| {
        anyhow::anyhow!(
            "no usable person {who:?} in the source (by person_id or email){}",
            if plan.desire.tt.quarantined_people.contains(who) {
                "; their row is quarantined, see above"
            } else {
                ""
            }
        )
    })
}

fn person_json(plan: &edusync_engine::ProfilePlan, who: &str) -> Result<serde_json::Value> {
    let p = find(plan, who)?;
    let tt = &plan.desire.tt;
    let events: Vec<_> = plan
        .desire
        .attendance
        .of(p)
        .iter()
        .filter(|&&e| plan.desire.window.contains(tt.events[e as usize].start))
        .map(|&e| {
            let r = plan.desire.renderer.render(tt, p, e);
            let ev = &tt.events[e as usize];
            json!({"event_id": ev.id, "start": ev.start.to_string(), "end": ev.end.to_string(),
                   "subject": r.as_ref().map(|r| r.subject.clone()).unwrap_or_default(),
                   "location": r.as_ref().map(|r| r.location.clone()).unwrap_or_default()})
        })
        .collect();
    let ops: Vec<_> = plan
        .targets
        .iter()
        .flat_map(|(name, pl)| {
            let pid = &tt.people[p as usize].id;
            pl.creates.iter().filter(|e| e.person == p).map(move |e| json!({"target": name, "op": "create", "event_id": tt.events[e.event as usize].id}))
                .chain(pl.updates.iter().filter(|e| e.person == p).map(move |e| json!({"target": name, "op": "update", "event_id": tt.events[e.event as usize].id})))
                .chain(pl.deletes.iter().filter(move |d| &d.person_id == pid).map(move |d| json!({"target": name, "op": "delete", "event_id": d.event_id})))
        })
        .collect();
    let person = &tt.people[p as usize];
    Ok(json!({"person_id": person.id, "email": person.email, "events": events, "changes": ops}))
}

fn print_person(plan: &edusync_engine::ProfilePlan, who: &str) -> Result<()> {
    let v = person_json(plan, who)?;
    println!(
        "\nperson {} <{}>:",
        v["person_id"].as_str().unwrap_or(""),
        v["email"].as_str().unwrap_or("")
    );
    let events = v["events"].as_array().cloned().unwrap_or_default();
    println!(
        "  calendar should hold {} events in the window:",
        events.len()
    );
    let tz = plan
        .desire
        .tt
        .events
        .first()
        .map(|e| e.timezone.clone())
        .unwrap_or_else(|| "UTC".into());
    let zone = jiff::tz::TimeZone::get(&tz).unwrap_or(jiff::tz::TimeZone::UTC);
    for e in events.iter().take(50) {
        let start: jiff::Timestamp = e["start"]
            .as_str()
            .unwrap_or("")
            .parse()
            .unwrap_or_default();
        println!(
            "    {}  {}  @ {}",
            start.to_zoned(zone.clone()).strftime("%a %Y-%m-%d %H:%M"),
            e["subject"].as_str().unwrap_or(""),
            e["location"].as_str().unwrap_or("")
        );
    }
    if events.len() > 50 {
        println!("    … and {} more", events.len() - 50);
    }
    let changes = v["changes"].as_array().cloned().unwrap_or_default();
    println!("  changes a sync would make: {}", changes.len());
    for c in changes.iter().take(50) {
        println!(
            "    {} {} {}",
            c["target"].as_str().unwrap_or(""),
            c["op"].as_str().unwrap_or(""),
            c["event_id"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
