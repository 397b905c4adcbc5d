//! Pure mapping between edusync and WebDAV/CalDAV: calendar URL templates,
//! resource names, request bodies, and the parsing of `207 Multi-Status`
//! answers. No I/O here, so all of it is unit-tested.

use std::collections::HashMap;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use edusync_core::keys;

/// Characters escaped when a person's email or id is put into one URL path
/// segment: everything that is not a `pchar` of RFC 3986 (`@` and `+` stay,
/// as servers show them in their own paths).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');

/// The `calendar_url` template of a CalDAV target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    template: String,
}

impl UrlTemplate {
    /// Accepts `http(s)://…` with `{email}` and/or `{person_id}` (or neither:
    /// one shared calendar). A trailing `/` is added when missing: a
    /// calendar is a collection.
    pub fn parse(template: &str) -> Result<UrlTemplate, String> {
        let t = template.trim();
        if !(t.starts_with("http://") || t.starts_with("https://")) {
            return Err(format!(
                "calendar_url {t:?} must start with http:// or https://, e.g. \"https://dav.example.ac.uk/{{email}}/timetable/\""
            ));
        }
        let rest = t
            .replacen("{email}", "", usize::MAX)
            .replacen("{person_id}", "", usize::MAX);
        if rest.contains('{') || rest.contains('}') {
            return Err(format!(
                "calendar_url {t:?} has a placeholder other than {{email}} and {{person_id}}"
            ));
        }
        let mut template = t.to_string();
        if !template.ends_with('/') {
            template.push('/');
        }
        Ok(UrlTemplate { template })
    }

    pub fn as_str(&self) -> &str {
        &self.template
    }

    pub fn uses_person_id(&self) -> bool {
        self.template.contains("{person_id}")
    }

    pub fn has_placeholders(&self) -> bool {
        self.template.contains("{email}") || self.template.contains("{person_id}")
    }

    /// Whether edusync can find every person's calendar from this template:
    /// placeholders only in the path, and `{person_id}` once, as a whole path
    /// segment and without `{email}` after it (cleardown lists the
    /// collection above it to find calendars of people no longer in the
    /// source). Says what to change otherwise.
    pub fn check_shape(&self) -> Result<(), String> {
        let t = &self.template;
        if authority(t).contains('{') {
            return Err(format!(
                "calendar_url {t:?}: placeholders belong in the path, not in the server's name"
            ));
        }
        if !self.uses_person_id() {
            return Ok(());
        }
        let at = t.find("{person_id}").unwrap_or_default();
        let (base, rest) = (&t[..at], &t[at + "{person_id}".len()..]);
        if !base.ends_with('/')
            || !(rest.is_empty() || rest.starts_with('/'))
            || rest.contains("{person_id}")
            || rest.contains("{email}")
        {
            return Err(format!(
                "calendar_url {t:?}: {{person_id}} must appear once, as a whole path segment, with no {{email}} after it \
                 (e.g. \"https://dav.example.ac.uk/calendars/{{person_id}}/timetable/\"), so edusync can find every person's calendar"
            ));
        }
        Ok(())
    }

    /// The calendar of the person with this email and id.
    pub fn expand(&self, email: &str, person_id: &str) -> String {
        self.template
            .replace("{email}", &utf8_percent_encode(email, SEGMENT).to_string())
            .replace(
                "{person_id}",
                &utf8_percent_encode(person_id, SEGMENT).to_string(),
            )
    }

    /// A display name for calendars edusync creates: the template's last
    /// fixed path segment ("timetable" → "Timetable"), else "Timetable".
    pub fn display_name(&self) -> String {
        let last = self
            .template
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        if last.is_empty() || last.contains('{') || last.contains(':') {
            return "Timetable".to_string();
        }
        let decoded = percent_decode_str(last).decode_utf8_lossy().into_owned();
        let mut c = decoded.chars();
        match c.next() {
            Some(f) => f.to_uppercase().chain(c).collect(),
            None => "Timetable".to_string(),
        }
    }
}

/// `scheme://host:port` of a URL: the key of the per-server limit.
pub fn authority(url: &str) -> String {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[after..]
        .find('/')
        .map(|i| after + i)
        .unwrap_or(url.len());
    url[..end].to_string()
}

/// The parent collection of a collection URL (`…/a/b/` → `…/a/`).
pub fn parent(url: &str) -> Option<String> {
    let trimmed = url.trim_end_matches('/');
    let cut = trimmed.rfind('/')?;
    let p = &trimmed[..=cut];
    (p.len() > authority(url).len() + 1).then(|| p.to_string())
}

/// The resource name (last path segment, decoded) of an href.
pub fn href_name(href: &str) -> String {
    let last = href
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    percent_decode_str(last).decode_utf8_lossy().into_owned()
}

/// The path of a URL (what servers put in `href`s).
pub fn url_path(url: &str) -> &str {
    let auth = authority(url).len();
    if auth >= url.len() {
        "/"
    } else {
        &url[auth..]
    }
}

/// The name under which an event of a profile is stored in every calendar.
pub fn resource_file(profile: &str, event_id: &str) -> String {
    format!("{}.ics", keys::resource_name(profile, event_id))
}

/// Whether `name` has the shape of this profile's resource names
/// (`edusync-<profile>-<32 hex>.ics`). Only such names are ever looked at;
/// everything else in a calendar is people's own and is not even read.
pub fn is_profile_resource(name: &str, profile: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("edusync-")
        .and_then(|r| r.strip_prefix(profile))
    else {
        return false;
    };
    let Some(hex) = rest.strip_prefix('-').and_then(|r| r.strip_suffix(".ics")) else {
        return false;
    };
    hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Escapes text for an XML element.
pub fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const XML_DECL: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

pub fn propfind_etags() -> String {
    format!(
        r#"{XML_DECL}<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>"#
    )
}

pub fn propfind(props: &str) -> String {
    format!(
        r#"{XML_DECL}<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>{props}</d:prop></d:propfind>"#
    )
}

/// Depth-0 `PROPFIND` of a collection's change tag: `CS:getctag` (Radicale,
/// Xandikos, Nextcloud, SOGo, iCloud), or RFC 6578's `DAV:sync-token`
/// property for servers without one.
pub fn propfind_change_tag(sync_token_property: bool) -> String {
    let prop = if sync_token_property {
        "<d:sync-token/>"
    } else {
        "<cs:getctag/>"
    };
    format!(
        r#"{XML_DECL}<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop>{prop}<d:resourcetype/></d:prop></d:propfind>"#
    )
}

/// What the CalDAV target stores per calendar after a check
/// (`Store::calendar_markers`): the collection's change tag read *before*
/// the listing the ledger was compared with, and the `sync-collection`
/// token that listing ended with (so the next listing asks only for what
/// changed since).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marker {
    pub ctag: Option<String>,
    pub token: Option<String>,
}

impl Marker {
    /// One `ctag <value>` and one `token <value>` line; values with a line
    /// break (never seen) are left out, which only costs a listing.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (key, v) in [("ctag", &self.ctag), ("token", &self.token)] {
            if let Some(v) = v.as_deref().filter(|v| !v.contains(['\n', '\r'])) {
                out.push_str(key);
                out.push(' ');
                out.push_str(v);
                out.push('\n');
            }
        }
        out
    }

    /// Reads [`Marker::encode`]'s text; anything else reads as no marker.
    pub fn parse(text: &str) -> Marker {
        let mut m = Marker::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("ctag", v)) if !v.is_empty() => m.ctag = Some(v.to_string()),
                Some(("token", v)) if !v.is_empty() => m.token = Some(v.to_string()),
                _ => {}
            }
        }
        m
    }
}

/// RFC 6578 `sync-collection`; an empty token asks for everything.
pub fn sync_collection(token: Option<&str>) -> String {
    let token = match token {
        Some(t) => format!("<d:sync-token>{}</d:sync-token>", xml_text(t)),
        None => "<d:sync-token/>".to_string(),
    };
    format!(
        r#"{XML_DECL}<d:sync-collection xmlns:d="DAV:">{token}<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#
    )
}

/// RFC 4791 `calendar-multiget` of some hrefs, with their data.
pub fn multiget<'a>(hrefs: impl IntoIterator<Item = &'a str>) -> String {
    let mut body = format!(
        r#"{XML_DECL}<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>"#
    );
    for h in hrefs {
        body.push_str("<d:href>");
        body.push_str(&xml_text(h));
        body.push_str("</d:href>");
    }
    body.push_str("</c:calendar-multiget>");
    body
}

pub fn mkcalendar(display_name: &str) -> String {
    format!(
        r#"{XML_DECL}<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop><d:displayname>{}</d:displayname><c:supported-calendar-component-set><c:comp name="VEVENT"/></c:supported-calendar-component-set></d:prop></d:set></c:mkcalendar>"#,
        xml_text(display_name)
    )
}

/// One `<response>` of a multistatus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DavResponse {
    pub href: String,
    /// The response-level status (sync-collection: 404 = removed, 507 = truncated).
    pub status: Option<u16>,
    /// Properties found with a 2xx propstat, by local name.
    pub props: HashMap<String, String>,
    /// Local names of properties that came back with 2xx, including empty ones
    /// (e.g. `calendar` inside `resourcetype`, kept as `resourcetype:calendar`).
    pub flags: Vec<String>,
}

impl DavResponse {
    pub fn etag(&self) -> Option<String> {
        self.props
            .get("getetag")
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
    }

    pub fn is_collection(&self) -> bool {
        self.flags.iter().any(|f| f == "resourcetype:collection")
    }
}

/// A parsed `207 Multi-Status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultiStatus {
    pub responses: Vec<DavResponse>,
    pub sync_token: Option<String>,
}

const DAV: &str = "DAV:";

fn status_code(text: &str) -> Option<u16> {
    // "HTTP/1.1 404 Not Found"
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

/// Parses a multistatus body.
pub fn parse_multistatus(xml: &str) -> Result<MultiStatus, String> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| format!("the server answered XML that cannot be read: {e}"))?;
    let root = doc.root_element();
    if !(root.tag_name().name() == "multistatus" && root.tag_name().namespace() == Some(DAV)) {
        return Err(format!(
            "expected a DAV:multistatus, got <{}>",
            root.tag_name().name()
        ));
    }
    let mut out = MultiStatus::default();
    for child in root.children().filter(|n| n.is_element()) {
        match (child.tag_name().namespace(), child.tag_name().name()) {
            (Some(DAV), "sync-token") => {
                out.sync_token = child.text().map(|t| t.trim().to_string())
            }
            (Some(DAV), "response") => {
                let mut r = DavResponse::default();
                for part in child.children().filter(|n| n.is_element()) {
                    if part.tag_name().namespace() != Some(DAV) {
                        continue;
                    }
                    match part.tag_name().name() {
                        "href" if r.href.is_empty() => {
                            r.href = part.text().unwrap_or_default().trim().to_string()
                        }
                        "status" => r.status = status_code(part.text().unwrap_or_default()),
                        "propstat" => {
                            let status = part
                                .children()
                                .find(|n| n.is_element() && n.tag_name().name() == "status")
                                .and_then(|n| status_code(n.text().unwrap_or_default()));
                            if !matches!(status, Some(200..=299)) {
                                continue;
                            }
                            let Some(prop) = part
                                .children()
                                .find(|n| n.is_element() && n.tag_name().name() == "prop")
                            else {
                                continue;
                            };
                            for p in prop.children().filter(|n| n.is_element()) {
                                let name = p.tag_name().name().to_string();
                                let mut text = String::new();
                                for t in p.descendants().filter(|n| n.is_text()) {
                                    text.push_str(t.text().unwrap_or_default());
                                }
                                for inner in p.children().filter(|n| n.is_element()) {
                                    r.flags.push(format!("{name}:{}", inner.tag_name().name()));
                                    // Nested hrefs (current-user-principal, calendar-home-set).
                                    if inner.tag_name().name() == "href" {
                                        r.props.entry(format!("{name}/href")).or_insert_with(
                                            || inner.text().unwrap_or_default().trim().to_string(),
                                        );
                                    }
                                }
                                r.flags.push(name.clone());
                                r.props.insert(name, text);
                            }
                        }
                        _ => {}
                    }
                }
                out.responses.push(r);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Whether an error body names a precondition (e.g. `valid-sync-token`).
pub fn names_precondition(xml: &str, name: &str) -> bool {
    roxmltree::Document::parse(xml)
        .map(|d| {
            d.descendants()
                .any(|n| n.is_element() && n.tag_name().name() == name)
        })
        .unwrap_or(false)
}

/// The tiny calendar object `check` writes and removes again.
pub fn probe_object(uid: &str) -> String {
    let now = edusync_core::ics::utc(jiff::Timestamp::now());
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:{}\r\nBEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:{now}\r\nDTSTART:{now}\r\nDTEND:{now}\r\nSUMMARY:edusync write check (removed at once)\r\n{}:edusync-check/{uid}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        edusync_core::ics::PRODID,
        edusync_core::ics::MARKER_PROP
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_and_encode() {
        let t = UrlTemplate::parse("http://h:1/dav/{email}/timetable").unwrap();
        assert_eq!(t.as_str(), "http://h:1/dav/{email}/timetable/");
        assert_eq!(
            t.expand("a b/c@x.org", "P1"),
            "http://h:1/dav/a%20b%2Fc@x.org/timetable/"
        );
        assert_eq!(t.display_name(), "Timetable");
        let p = UrlTemplate::parse("https://h/{person_id}/").unwrap();
        assert!(p.uses_person_id());
        assert_eq!(p.expand("x@y", "P#1"), "https://h/P%231/");
        assert!(UrlTemplate::parse("ftp://h/{email}/").is_err());
        assert!(UrlTemplate::parse("http://h/{mail}/").is_err());
        for ok in [
            "http://h/{email}/timetable/",
            "http://h/cal-{email}/",
            "http://h/c/{person_id}/timetable/",
            "http://h/c/{person_id}",
            "http://h/{email}/x/{person_id}/",
        ] {
            assert!(
                UrlTemplate::parse(ok).unwrap().check_shape().is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://h/c/p-{person_id}/",
            "http://h/c/{person_id}-x/",
            "http://h/{person_id}/{email}/",
            "http://h/{person_id}/{person_id}/",
            "http://{email}.h/cal/",
        ] {
            assert!(
                UrlTemplate::parse(bad).unwrap().check_shape().is_err(),
                "{bad}"
            );
        }
        assert_eq!(authority("http://h:1/a/b/"), "http://h:1");
        assert_eq!(parent("http://h:1/a/b/").as_deref(), Some("http://h:1/a/"));
        assert_eq!(parent("http://h:1/a/"), None);
        assert_eq!(url_path("http://h:1/a/b/"), "/a/b/");
        assert_eq!(href_name("/alice%40x.org/timetable/e.ics"), "e.ics");
    }

    #[test]
    fn markers_round_trip_and_garbage_reads_as_none() {
        let m = Marker {
            ctag: Some("\"3f a\"".into()),
            token: Some("http://radicale.org/ns/sync/ab".into()),
        };
        assert_eq!(Marker::parse(&m.encode()), m);
        let only = Marker {
            ctag: None,
            token: Some("t".into()),
        };
        assert_eq!(Marker::parse(&only.encode()), only);
        assert_eq!(Marker::parse("junk\nctag\n"), Marker::default());
        let broken = Marker {
            ctag: Some("a\nb".into()),
            token: None,
        };
        assert_eq!(Marker::parse(&broken.encode()), Marker::default());
        assert!(propfind_change_tag(false).contains("<cs:getctag/>"));
        assert!(propfind_change_tag(true).contains("<d:sync-token/>"));
    }

    #[test]
    fn only_this_profiles_names_match() {
        let n = resource_file("teaching", "E1");
        assert!(is_profile_resource(&n, "teaching"));
        assert!(!is_profile_resource(&n, "teach"));
        assert!(!is_profile_resource(
            &resource_file("teaching-x", "E1"),
            "teaching"
        ));
        assert!(!is_profile_resource("holiday.ics", "teaching"));
        assert!(!is_profile_resource("edusync-teaching-zz.ics", "teaching"));
    }

    #[test]
    fn multistatus_is_read_with_any_prefix() {
        let xml = r#"<?xml version="1.0"?><ns0:multistatus xmlns:ns0="DAV:"><ns0:response><ns0:href>/a/b.ics</ns0:href><ns0:propstat><ns0:status>HTTP/1.1 200 OK</ns0:status><ns0:prop><ns0:getetag>"e1"</ns0:getetag></ns0:prop></ns0:propstat></ns0:response><ns0:response><ns0:href>/a/c.ics</ns0:href><ns0:status>HTTP/1.1 404 Not Found</ns0:status></ns0:response><ns0:sync-token>tok</ns0:sync-token></ns0:multistatus>"#;
        let m = parse_multistatus(xml).unwrap();
        assert_eq!(m.sync_token.as_deref(), Some("tok"));
        assert_eq!(m.responses.len(), 2);
        assert_eq!(m.responses[0].etag().as_deref(), Some("\"e1\""));
        assert_eq!(m.responses[1].status, Some(404));
        let xml = r#"<multistatus xmlns="DAV:"><response><href>/p/</href><propstat><prop><current-user-principal><href>/edusync/</href></current-user-principal><resourcetype><collection/></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"#;
        let m = parse_multistatus(xml).unwrap();
        assert_eq!(
            m.responses[0]
                .props
                .get("current-user-principal/href")
                .map(String::as_str),
            Some("/edusync/")
        );
        assert!(m.responses[0].is_collection());
        assert!(names_precondition(
            r#"<error xmlns="DAV:"><valid-sync-token/></error>"#,
            "valid-sync-token"
        ));
    }
}
