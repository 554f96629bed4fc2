//! Input checks shared by the services. Lengths count characters, not bytes,
//! so non-ASCII names are not penalised.

use crate::error::ApiError;

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 32;
pub const EMAIL_MAX: usize = 254;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const TEAM_NAME_MAX: usize = 100;
pub const DESCRIPTION_MAX: usize = 1000;
pub const TITLE_MAX: usize = 200;
pub const REASON_MAX: usize = 500;
/// Upper bound for free-form lookup inputs (login, join code), so a huge
/// value never reaches the database or the password hasher.
pub const LOOKUP_MAX: usize = 256;

/// Trims and checks the length of a free-text field.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    let n = v.chars().count();
    if n < min {
        return Err(ApiError::Validation(if min == 1 {
            format!("{field} must not be empty")
        } else {
            format!("{field} must be at least {min} characters")
        }));
    }
    if n > max {
        return Err(ApiError::Validation(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::Validation(format!(
            "{field} must not contain control characters"
        )));
    }
    if let Some(c) = v.chars().find(|&c| is_deceptive(c)) {
        return Err(ApiError::Validation(format!(
            "{field} must not contain invisible or text-direction characters (U+{:04X})",
            u32::from(c)
        )));
    }
    Ok(v.to_string())
}

/// Characters that let a name look like something else: bidirectional
/// embeddings, overrides and isolates (U+202E turns "gnp.exe" into
/// "exe.png") and zero-width spaces that make two names look identical.
/// Zero-width (non-)joiners stay allowed: scripts such as Persian and emoji
/// sequences need them.
fn is_deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' // zero-width space
            | '\u{2060}' // word joiner
            | '\u{FEFF}' // zero-width no-break space (BOM)
            | '\u{202A}'..='\u{202E}' // embeddings and overrides
            | '\u{2066}'..='\u{2069}' // isolates
    )
}

pub fn username(value: &str) -> Result<String, ApiError> {
    let v = text("username", value, USERNAME_MIN, USERNAME_MAX)?;
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(ApiError::Validation(
            "username may only contain letters, digits, '_', '-' and '.'".into(),
        ));
    }
    Ok(v)
}

pub fn email(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.chars().count() > EMAIL_MAX {
        return Err(ApiError::Validation(format!(
            "email must be at most {EMAIL_MAX} characters"
        )));
    }
    if !email_address::EmailAddress::is_valid(v) {
        return Err(ApiError::Validation("email is not a valid address".into()));
    }
    Ok(v.to_string())
}

pub fn password(value: &str) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < PASSWORD_MIN {
        return Err(ApiError::Validation(format!(
            "password must be at least {PASSWORD_MIN} characters"
        )));
    }
    if n > PASSWORD_MAX {
        return Err(ApiError::Validation(format!(
            "password must be at most {PASSWORD_MAX} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert!(username("ab").is_err());
        assert!(username("alice@x").is_err());
        assert_eq!(username(" alice ").unwrap(), "alice");
        assert!(email("not-an-email").is_err());
        assert!(email("a@example.com").is_ok());
        assert!(password("short").is_err());
        assert!(password("long enough").is_ok());
        assert!(text("name", &"x".repeat(101), 1, 100).is_err());
        assert!(text("name", "  ", 1, 100).is_err());
        for sneaky in [
            "evil\u{202E}gnp.exe",
            "ad\u{200B}min",
            "\u{2066}x\u{2069}",
            "\u{FEFF}team",
        ] {
            let err = text("name", sneaky, 1, 100).unwrap_err();
            assert!(err.to_string().contains("invisible"), "{sneaky:?}: {err}");
        }
        // Joiners are part of scripts and emoji, and accents are not tricks.
        assert!(text("name", "می\u{200C}خواهم", 1, 100).is_ok());
        assert!(text("name", "👩\u{200D}💻 Café", 1, 100).is_ok());
    }
}
