//! The Socket.io rooms: which rooms a socket joins and which rooms hear about a unit. Pure
//! functions of registry ids, so the tenant boundary is testable without a network: an event
//! about a unit only ever reaches rooms prefixed with its own unit's organization.
//!
//! A room name is `org:<org>[:site:<site>|:unit:<unit>][:readings|:events]`, each id part
//! escaped (`%` → `%25`, `:` → `%3A`), so no id, and no claim a token carries, can make one
//! room's name read as another's. Registry ids cannot hold `:` at all (`super::ids`), and a
//! token whose organization the registry does not know never gets this far.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use super::registry::Unit;

/// An id as a part of a room name: `%` and `:` escaped (borrowed when there is neither).
fn part(id: &str) -> Cow<'_, str> {
    if id.contains([':', '%']) {
        Cow::Owned(id.replace('%', "%25").replace(':', "%3A"))
    } else {
        Cow::Borrowed(id)
    }
}

/// The room every socket of an organization joins on connect.
pub fn org_room(org: &str) -> String {
    format!("org:{}", part(org))
}

pub fn unit_room(org: &str, unit: &str) -> String {
    format!("org:{}:unit:{}", part(org), part(unit))
}

pub fn site_room(org: &str, site: &str) -> String {
    format!("org:{}:site:{}", part(org), part(site))
}

/// The room of sockets that subscribed to every reading of the organization.
pub fn readings_room(org: &str) -> String {
    format!("org:{}:readings", part(org))
}

/// The room a socket limited to some sites joins, per allowed site, instead of [`org_room`]:
/// it carries the organization-wide events (alerts) of that site only.
pub fn site_events_room(org: &str, site: &str) -> String {
    format!("org:{}:site:{}:events", part(org), part(site))
}

/// A room name of the registry, interned: built once per unit and then handed to every
/// broadcast without an allocation. Hand-written because socketioxide's rooms are
/// `Cow<'static, str>`: a `&'static str` is the only form it takes for free.
pub type Room = &'static str;

/// The names handed out so far. Only registry ids (and the ids of alerts kept in the state
/// file, which came from a registry) are interned, never client input, so this grows with the
/// registries the service has run with and is shared by every reload that keeps a unit.
static INTERNED: Mutex<Option<HashSet<Room>>> = Mutex::new(None);

fn intern(name: String) -> Room {
    let mut set = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
    let set = set.get_or_insert_with(HashSet::new);
    if let Some(known) = set.get(name.as_str()) {
        return known;
    }
    let leaked: Room = Box::leak(name.into_boxed_str());
    set.insert(leaked);
    leaked
}

/// The rooms that hear about one unit, computed once (when the registry is loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitRooms {
    pub unit: Room,
    pub site: Room,
    pub readings: Room,
    pub org: Room,
    pub site_events: Room,
}

impl UnitRooms {
    pub fn new(org: &str, site: &str, unit: &str) -> Self {
        UnitRooms {
            unit: intern(unit_room(org, unit)),
            site: intern(site_room(org, site)),
            readings: intern(readings_room(org)),
            org: intern(org_room(org)),
            site_events: intern(site_events_room(org, site)),
        }
    }

    /// The rooms a reading of the unit is emitted to (socketioxide delivers once per socket
    /// even when a socket is in several of them).
    pub fn readings(&self) -> [Room; 3] {
        [self.unit, self.site, self.readings]
    }

    /// Rooms for an event about the unit that the whole organization must hear (alerts): the
    /// organization room, the site-limited sockets' room of its site, and the unit's and site's
    /// subscription rooms.
    pub fn org_events(&self) -> [Room; 4] {
        [self.org, self.site_events, self.unit, self.site]
    }
}

/// The rooms a reading of `unit` is emitted to.
pub fn reading_rooms(unit: &Unit) -> [Room; 3] {
    unit.rooms.readings()
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

    #[test]
    fn no_id_names_another_room() {
        assert_eq!(org_room("org-a:readings"), "org:org-a%3Areadings");
        assert_ne!(org_room("org-a:readings"), readings_room("org-a"));
        assert_ne!(
            org_room("org-a:site:s1:events"),
            site_events_room("org-a", "s1")
        );
        assert_ne!(
            site_events_room("o", "s1:events"),
            site_room("o", "s1:events:events")
        );
        assert_ne!(org_room("a%3Ab"), org_room("a:b"));
    }
}
