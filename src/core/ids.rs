//! Identifiers: the key a sensor id is matched by ([`normalize_sensor_id`]), and what a
//! registry id (organization, site, unit) may contain. Registry ids become parts of room names
//! (see [`super::rooms`]), so they are checked before anything is built from them.

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

/// Ids are room-name parts: non-empty, printable, no `:` (the room separator), bounded.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("must be 1 to 128 bytes".into());
    }
    if id
        .chars()
        .any(|c| c.is_control() || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "{id:?} may not contain ':', spaces or control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
