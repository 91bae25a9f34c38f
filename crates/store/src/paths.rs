//! Where a profile's database lives.

use std::path::PathBuf;

use directories::ProjectDirs;

use crate::StoreError;

/// Longest profile name, in characters.
pub const MAX_PROFILE_CHARS: usize = 32;

/// The database file of `profile`: `<data dir>/profiles/<profile>/confab.sqlite3`, where the
/// data dir is the platform's (`~/.local/share/confab` on Linux, `~/Library/Application
/// Support/org.Confab.confab` on macOS, `%APPDATA%\Confab\confab\data` on Windows).
///
/// A profile is 1 to [`MAX_PROFILE_CHARS`] characters of `a-z`, `0-9`, `_` and `-`, so it is
/// always exactly one path component: `..`, `/`, `\`, uppercase (which some file systems fold)
/// and the empty name are [`StoreError::BadProfile`]. Reads no file and creates nothing.
pub fn default_path(profile: &str) -> Result<PathBuf, StoreError> {
    check_profile(profile)?;
    let dirs = ProjectDirs::from("org", "Confab", "confab").ok_or(StoreError::NoDataDir)?;
    Ok(dirs
        .data_dir()
        .join("profiles")
        .join(profile)
        .join("confab.sqlite3"))
}

fn check_profile(profile: &str) -> Result<(), StoreError> {
    let ok = (1..=MAX_PROFILE_CHARS).contains(&profile.len())
        && profile
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        // Keep the echo short: the name may have come from a command line or a deep link.
        Err(StoreError::BadProfile(profile.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_profiles_are_accepted() {
        for good in ["default", "a", "work-2", "test_profile", &"x".repeat(32)] {
            assert!(check_profile(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn bad_profiles_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "/",
            "a/b",
            "../etc",
            "a\\b",
            "Default",
            "with space",
            "émile",
            "a\0b",
            &"x".repeat(33),
        ] {
            assert!(
                matches!(check_profile(bad), Err(StoreError::BadProfile(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn the_echo_of_a_bad_profile_is_short() {
        let Err(StoreError::BadProfile(echo)) = check_profile(&"/".repeat(10_000)) else {
            panic!("a 10k-character name was accepted");
        };
        assert_eq!(echo.chars().count(), 40);
    }
}
