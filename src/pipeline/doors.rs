//! The door contacts of one unit: the last state each reported, and when it changed. Kept in
//! the unit's feed (under the unit's lock, like its readings) so that a change is announced
//! (`unit:door`) exactly once, and a subscribe ack shows the state the events after it follow.
//! Only readings the registry maps to the unit get here, so there is at most one entry per
//! sensor registered to it; a reload drops the contacts that no longer belong to it.

use chrono::{DateTime, Utc};
use std::sync::Arc;

use crate::core::reading::UnitDoor;
use crate::core::registry::{Registry, Unit};

#[derive(Debug, Default)]
pub struct Doors(Vec<UnitDoor>);

impl Doors {
    /// Records what `device` says; the `unit:door` event when that is a change (the first
    /// report of a contact since the start is one: its state was not known before). A repeat
    /// only moves `recorded_at`.
    pub fn set(
        &mut self,
        unit: &Unit,
        device: &Arc<str>,
        open: bool,
        received_at: DateTime<Utc>,
        recorded_at: DateTime<Utc>,
    ) -> Option<UnitDoor> {
        match self.0.iter_mut().find(|d| d.device_id == *device) {
            Some(d) if d.open == open => {
                d.recorded_at = recorded_at;
                None
            }
            Some(d) => {
                d.open = open;
                d.since = received_at;
                d.recorded_at = recorded_at;
                Some(d.clone())
            }
            None => {
                let d = UnitDoor {
                    unit_id: unit.id.clone(),
                    site_id: unit.site.clone(),
                    organization_id: unit.org.clone(),
                    device_id: device.clone(),
                    open,
                    since: received_at,
                    recorded_at,
                };
                self.0.push(d.clone());
                Some(d)
            }
        }
    }

    /// Takes a change another instance announced (cluster mode): the contact's state becomes
    /// the one `door` carries.
    pub fn apply(&mut self, door: &UnitDoor) {
        match self.0.iter_mut().find(|d| d.device_id == door.device_id) {
            Some(d) => *d = door.clone(),
            None => self.0.push(door.clone()),
        }
    }

    /// The unit's door: open while any contact is (the one open longest), else the contact
    /// that changed last; `None` until a contact has reported.
    pub fn current(&self) -> Option<&UnitDoor> {
        let open = self.0.iter().filter(|d| d.open).min_by_key(|d| d.since);
        open.or_else(|| self.0.iter().max_by_key(|d| d.since))
    }

    pub fn all(&self) -> &[UnitDoor] {
        &self.0
    }

    pub fn open_count(&self) -> usize {
        self.0.iter().filter(|d| d.open).count()
    }

    /// Forgets the contacts `registry` no longer maps to `unit`, and every contact when the
    /// unit moved to another site or organization: their next report is then a first one,
    /// announced with the unit's new ids (the old owner's ids never reach the new one).
    pub fn retain_mapped(&mut self, registry: &Registry, unit: &str) {
        self.0.retain(|d| {
            registry.unit_for_key(&d.device_id).is_some_and(|u| {
                &*u.id == unit && u.site == d.site_id && u.org == d.organization_id
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::path::Path;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    /// Each change is announced once, repeats are not, and the unit is open while any of its
    /// contacts is.
    #[test]
    fn a_change_is_announced_once_and_the_unit_is_open_while_any_contact_is() {
        let reg = Registry::parse(
            "[[org]]\nid = \"o\"\n[[site]]\nid = \"s\"\norg = \"o\"\n[[unit]]\nid = \"u\"\n\
             site = \"s\"\n[[sensor]]\nid = \"a\"\nunit = \"u\"\n[[sensor]]\nid = \"b\"\nunit = \"u\"\n",
            Path::new("r.toml"),
        )
        .unwrap();
        let unit = reg.unit("u").unwrap().clone();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut doors = Doors::default();
        assert!(doors.current().is_none());
        let first = doors.set(&unit, &a, false, t(0), t(0)).unwrap();
        assert_eq!(
            (first.open, first.since),
            (false, t(0)),
            "first report: a change"
        );
        assert!(
            doors.set(&unit, &a, false, t(5), t(4)).is_none(),
            "a repeat"
        );
        assert_eq!(doors.all()[0].recorded_at, t(4));
        assert!(doors.set(&unit, &a, true, t(10), t(10)).is_some());
        assert!(doors.set(&unit, &b, true, t(20), t(20)).is_some());
        assert_eq!(&*doors.current().unwrap().device_id, "a", "open longest");
        assert_eq!(doors.open_count(), 2);
        doors.set(&unit, &a, false, t(30), t(30));
        assert_eq!(&*doors.current().unwrap().device_id, "b", "still open");
        doors.set(&unit, &b, false, t(40), t(40));
        let now = doors.current().unwrap();
        assert_eq!((&*now.device_id, now.open), ("b", false), "closed last");

        let moved = Registry::parse(
            "[[org]]\nid = \"o\"\n[[site]]\nid = \"s\"\norg = \"o\"\n[[unit]]\nid = \"u\"\n\
             site = \"s\"\n[[sensor]]\nid = \"a\"\nunit = \"u\"\n",
            Path::new("r.toml"),
        )
        .unwrap();
        doors.retain_mapped(&moved, "u");
        assert_eq!(doors.all().len(), 1);

        let other_site = Registry::parse(
            "[[org]]\nid = \"o\"\n[[site]]\nid = \"s2\"\norg = \"o\"\n[[unit]]\nid = \"u\"\n\
             site = \"s2\"\n[[sensor]]\nid = \"a\"\nunit = \"u\"\n",
            Path::new("r.toml"),
        )
        .unwrap();
        doors.retain_mapped(&other_site, "u");
        assert!(
            doors.all().is_empty(),
            "the unit moved: its contacts start afresh"
        );
        let unit = other_site.unit("u").unwrap().clone();
        let first = doors.set(&unit, &a, false, t(50), t(50)).unwrap();
        assert_eq!(&*first.site_id, "s2", "announced with the new site");
    }
}
