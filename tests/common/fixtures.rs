//! Where the sensor payload fixtures are, for `tests/decoder_fixtures.rs` and
//! `benches/decode.rs` (which includes this file by path). The project's own set,
//! `tests/fixtures/payloads/`, is always there, so a fresh clone tests itself; a second set is
//! added when there is one: `$SENSORCAST_FIXTURES` if set (it must then be readable), else
//! `../shared/fixtures/payloads/` beside the repository if that folder exists. Both use the
//! format of `tests/fixtures/payloads/README.md`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The project's own fixtures.
pub fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/payloads")
}

/// The extra fixture folder, if any: `$SENSORCAST_FIXTURES`, else `../shared/fixtures/payloads`
/// when it exists.
pub fn extra_dir() -> Option<PathBuf> {
    match std::env::var_os("SENSORCAST_FIXTURES") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/payloads");
            shared.is_dir().then_some(shared)
        }
    }
}

/// Every fixture folder to read: the project's, then the extra one.
pub fn dirs() -> Vec<PathBuf> {
    std::iter::once(project_dir()).chain(extra_dir()).collect()
}

/// The `*.json` files of `dir`, sorted. Panics when the folder cannot be read or holds none,
/// so a broken checkout or a mistyped `SENSORCAST_FIXTURES` cannot pass by testing nothing.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "fixtures folder {} cannot be read ({e}); check SENSORCAST_FIXTURES",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("fixtures folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.json fixtures in {}", dir.display());
    files
}
