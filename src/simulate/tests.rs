//! Tests of the simulator's plan and steps.

use super::wire::tests::sub;
use super::*;
use crate::decode::Format;
use std::path::Path;

#[test]
fn plan_covers_every_sensor_it_can_and_names_the_rest() {
    let reg = Registry::parse(
        r#"
[[org]]
id = "o"
[[site]]
id = "s"
org = "o"
[[unit]]
id = "u"
site = "s"
name = "Deep freezer"
[[sensor]]
id = "ac-1f-09-ff-fe-01-45-4e"
unit = "u"
[[sensor]]
id = "probe-1"
unit = "u"
[[sensor]]
id = "kitchen/probe"
unit = "u"
[[sensor]]
id = "freezer-door"
unit = "u"
"#,
        Path::new("r.toml"),
    )
    .unwrap();
    let (sensors, skipped) = plan(&reg, &[sub("sensors/+", Format::Json)], 42);
    let ids: Vec<_> = sensors.iter().map(|s| s.sensor_id.as_str()).collect();
    assert_eq!(ids, ["AC1F09FFFE01454E", "freezer-door", "probe-1"]);
    assert_eq!(sensors[0].model.kind, UnitKind::Freezer);
    let doors: Vec<_> = sensors.iter().map(|s| s.door.is_some()).collect();
    assert_eq!(
        doors,
        [false, true, false],
        "an id with `door` is a door contact"
    );
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains("kitchen/probe"), "{skipped:?}");
}
