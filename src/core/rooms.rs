//! The Socket.io rooms: which rooms a socket joins and which rooms hear about a unit. Pure
//! functions of registry ids, so the tenant boundary is testable without a network: an event
//! about a unit only ever reaches rooms prefixed with its own unit's organization.

use super::registry::Unit;

/// The room every socket of an organization joins on connect.
pub fn org_room(org: &str) -> String {
    format!("org:{org}")
}

pub fn unit_room(org: &str, unit: &str) -> String {
    format!("org:{org}:unit:{unit}")
}

pub fn site_room(org: &str, site: &str) -> String {
    format!("org:{org}:site:{site}")
}

/// The room of sockets that subscribed to every reading of the organization.
pub fn readings_room(org: &str) -> String {
    format!("org:{org}:readings")
}

/// The room a socket limited to some sites joins, per allowed site, instead of [`org_room`]:
/// it carries the organization-wide events (alerts) of that site only.
pub fn site_events_room(org: &str, site: &str) -> String {
    format!("org:{org}:site:{site}:events")
}

/// Rooms for an event about `unit` that the whole organization must hear (alerts): the
/// organization room, the site-limited sockets' room of its site, and the unit's and site's
/// subscription rooms. socketioxide still delivers once per socket.
pub fn org_event_rooms(unit: &Unit) -> Vec<String> {
    vec![
        org_room(&unit.org),
        site_events_room(&unit.org, &unit.site),
        unit_room(&unit.org, &unit.id),
        site_room(&unit.org, &unit.site),
    ]
}

/// The rooms a reading of `unit` is emitted to (socketioxide delivers once per socket even when
/// a socket is in several of them).
pub fn reading_rooms(unit: &Unit) -> Vec<String> {
    vec![
        unit_room(&unit.org, &unit.id),
        site_room(&unit.org, &unit.site),
        readings_room(&unit.org),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::registry::Registry;
    use std::path::Path;

    #[test]
    fn readings_go_only_to_rooms_of_their_own_org() {
        let reg = Registry::parse(
            r#"
[[org]]
id = "o1"
[[org]]
id = "o2"
[[site]]
id = "s1"
org = "o1"
[[site]]
id = "s2"
org = "o2"
[[unit]]
id = "u1"
site = "s1"
[[unit]]
id = "u2"
site = "s2"
[[sensor]]
id = "A1"
unit = "u1"
[[sensor]]
id = "B2"
unit = "u2"
"#,
            Path::new("r.toml"),
        )
        .unwrap();
        let unit = reg.unit_for_sensor("A1").unwrap();
        assert_eq!(
            reading_rooms(unit),
            ["org:o1:unit:u1", "org:o1:site:s1", "org:o1:readings"]
        );
        let other = reg.unit_for_sensor("B2").unwrap();
        assert!(reading_rooms(other)
            .iter()
            .all(|r| r.starts_with("org:o2:")));
        assert!(reg.unit_for_sensor("C3").is_none());
    }
}
