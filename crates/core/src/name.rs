//! Display names as the room accepts them.

use confab_proto::MAX_NAME_CHARS;

use crate::RoomError;

/// The name trimmed of surrounding whitespace, if 1 to [`MAX_NAME_CHARS`] characters remain.
pub(crate) fn clean_name(name: &str) -> Result<String, RoomError> {
    let name = name.trim();
    // `nth` rather than `count` so a hostile megabyte costs no more than a long name.
    if name.is_empty() || name.chars().nth(MAX_NAME_CHARS).is_some() {
        return Err(RoomError::InvalidName);
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded_in_characters() {
        assert_eq!(clean_name("  ada \n").as_deref(), Ok("ada"));
        assert_eq!(clean_name(""), Err(RoomError::InvalidName));
        assert_eq!(clean_name(" \t\n "), Err(RoomError::InvalidName));
        let longest = "é".repeat(MAX_NAME_CHARS); // 2 bytes each: the limit is in characters
        assert_eq!(clean_name(&format!(" {longest} ")), Ok(longest.clone()));
        assert_eq!(
            clean_name(&format!("{longest}e")),
            Err(RoomError::InvalidName)
        );
        assert_eq!(
            clean_name(&"x".repeat(1 << 20)),
            Err(RoomError::InvalidName)
        );
    }
}
