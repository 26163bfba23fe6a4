//! SASL PLAIN (RFC 4616), as both local listeners take a login: IMAP
//! `AUTHENTICATE PLAIN` and SMTP `AUTH PLAIN`. The credentials are passed
//! on to the provider; logging in on behalf of another user is not offered,
//! since the provider would be asked for one user and the mail served for
//! another.

use secrecy::SecretString;

/// A decoded PLAIN response.
pub struct PlainLogin {
    pub username: String,
    pub password: SecretString,
}

impl std::fmt::Debug for PlainLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainLogin")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a PLAIN response was refused, in words a mail client can show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("Malformed PLAIN response")]
    Malformed,
    #[error("PLAIN fields must be UTF-8")]
    NotUtf8,
    #[error("Logging in on behalf of another user is not supported")]
    OnBehalf,
}

/// `authzid NUL authcid NUL password`, already base64-decoded.
pub fn parse_plain(decoded: &[u8]) -> Result<PlainLogin, PlainError> {
    let mut fields = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(PlainError::Malformed);
    };
    let (Ok(authzid), Ok(username), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(authcid),
        std::str::from_utf8(password),
    ) else {
        return Err(PlainError::NotUtf8);
    };
    if username.is_empty() {
        return Err(PlainError::Malformed);
    }
    if !authzid.is_empty() && authzid != username {
        return Err(PlainError::OnBehalf);
    }
    Ok(PlainLogin {
        username: username.to_string(),
        password: SecretString::from(password.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    #[test]
    fn plain_responses() {
        let ok = parse_plain(b"\0alice\0secret").expect("login");
        assert_eq!(ok.username, "alice");
        assert_eq!(ok.password.expose_secret(), "secret");
        assert!(parse_plain(b"alice\0alice\0secret").is_ok());
        assert_eq!(
            parse_plain(b"bob\0alice\0secret").err(),
            Some(PlainError::OnBehalf)
        );
        assert_eq!(
            parse_plain(b"alice\0secret").err(),
            Some(PlainError::Malformed)
        );
        assert_eq!(parse_plain(b"\0a\0b\0c").err(), Some(PlainError::Malformed));
        assert_eq!(
            parse_plain(b"\0\0secret").err(),
            Some(PlainError::Malformed)
        );
        assert_eq!(
            parse_plain(b"\0al\xffice\0pw").err(),
            Some(PlainError::NotUtf8)
        );
        assert!(!format!("{ok:?}").contains("secret"));
    }
}
