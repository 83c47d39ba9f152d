//! Identifiers: the key a sensor id is matched by ([`normalize_sensor_id`]), and what a
//! registry id (organization, site, unit) may contain. Registry ids become parts of room names
//! (see [`super::rooms`]), so they are checked before anything is built from them, and they are
//! compared in Unicode NFC ([`nfc`]): an id typed with a combining accent and one typed
//! precomposed are the same id, wherever it comes from (the registry, a token's claim, a client
//! event). Invisible characters (control, format, zero-width) and look-alikes of `:` (the room
//! separator) are refused, so two ids that look the same on a screen are the same id.

use std::borrow::Cow;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// Why a sensor id is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SensorIdError {
    #[error("sensor id is empty")]
    Empty,
    #[error("sensor id is longer than 128 bytes")]
    TooLong,
    #[error("sensor id is not printable text")]
    NotPrintable,
}

/// The key a sensor id is matched by. Hex device ids (a LoRaWAN dev_eui, a MAC) come in any
/// case and with `-` or `:` separators: those become plain upper-case hex. Any other id (a
/// Tasmota topic, a Zigbee friendly name) is kept as it is, since it may be case-sensitive.
pub fn normalize_sensor_id(id: &str) -> Result<String, SensorIdError> {
    if id.is_empty() {
        return Err(SensorIdError::Empty);
    }
    if id.len() > 128 {
        return Err(SensorIdError::TooLong);
    }
    if id.chars().any(char::is_control) {
        return Err(SensorIdError::NotPrintable);
    }
    let hex: String = id.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    let is_hex_id = hex.len() >= 8
        && hex.len().is_multiple_of(2)
        && hex.chars().all(|c| c.is_ascii_hexdigit())
        && (hex.len() == id.len() || separators_are_regular(id));
    if is_hex_id {
        Ok(hex.to_ascii_uppercase())
    } else {
        Ok(id.to_string())
    }
}

/// `a8-40-41-..` or `A8:40:..`: separators every two hex digits.
fn separators_are_regular(id: &str) -> bool {
    id.split(['-', ':']).all(|part| part.len() == 2)
}

/// `id` in Unicode NFC (borrowed when it already is, the common case).
pub fn nfc(id: &str) -> Cow<'_, str> {
    match is_nfc_quick(id.chars()) {
        IsNormalized::Yes => Cow::Borrowed(id),
        _ => Cow::Owned(id.nfc().collect()),
    }
}

/// A registry id as it is kept and compared: in NFC, and valid (see [`check_id`]).
pub fn canonical_id(id: &str) -> Result<String, String> {
    let id = nfc(id);
    check_id(&id)?;
    Ok(id.into_owned())
}

/// Ids are room-name parts: non-empty, bounded, printable and visible, no `:` (the room
/// separator) nor anything that looks like one.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("must be 1 to 128 bytes".into());
    }
    if let Some(c) = id
        .chars()
        .find(|&c| c.is_control() || c.is_whitespace() || c == ':' || invisible(c) || colon_like(c))
    {
        return Err(format!(
            "{id:?} may not contain {c:?} (U+{:04X}): no ':' or look-alikes of it, spaces, \
             control or invisible (format, zero-width) characters",
            c as u32
        ));
    }
    Ok(())
}

/// Format characters (Unicode category Cf) and other characters that show as nothing. A
/// short table written out here: it is data that changes once in years, and no crate we use
/// has the categories.
fn invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180E | 0x3164 | 0xFFA0
        | 0x0600..=0x0605 | 0x06DD | 0x070F | 0x08E2 | 0x180B..=0x180F | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFE00..=0xFE0F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// Characters drawn like `:`.
fn colon_like(c: char) -> bool {
    matches!(
        c,
        '\u{02D0}'
            | '\u{02F8}'
            | '\u{0589}'
            | '\u{05C3}'
            | '\u{0703}'
            | '\u{0704}'
            | '\u{16EC}'
            | '\u{1804}'
            | '\u{1808}'
            | '\u{205A}'
            | '\u{2236}'
            | '\u{A4FD}'
            | '\u{A789}'
            | '\u{FE13}'
            | '\u{FE30}'
            | '\u{FE55}'
            | '\u{FF1A}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_ids_are_nfc_and_visible_and_never_name_a_room_separator() {
        let decomposed = "cafe\u{301}";
        assert_eq!(canonical_id(decomposed).unwrap(), "caf\u{e9}");
        assert_eq!(canonical_id("caf\u{e9}").unwrap(), "caf\u{e9}");
        for bad in [
            "org-a:readings",
            "org-a\u{FF1A}readings",
            "org-a\u{2236}x",
            "org\u{200B}a",
            "org\u{202E}a",
            "org\u{FEFF}",
            "org\u{7}a",
            "org a",
            "",
        ] {
            assert!(canonical_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_id("o1-fridge_2.b").is_ok());
    }

    #[test]
    fn sensor_ids_that_are_not_text_are_refused() {
        assert_eq!(normalize_sensor_id(""), Err(SensorIdError::Empty));
        assert_eq!(
            normalize_sensor_id("a\u{0}b"),
            Err(SensorIdError::NotPrintable)
        );
        assert_eq!(
            normalize_sensor_id(&"x".repeat(129)),
            Err(SensorIdError::TooLong)
        );
        assert_eq!(
            normalize_sensor_id("kitchen/fridge").unwrap(),
            "kitchen/fridge"
        );
    }
}
