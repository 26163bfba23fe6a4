//! The Autocrypt Setup Message: moving a secret key between devices.

use std::io::{Read as _, Write as _};

use rand::Rng as _;
use sequoia_openpgp::armor;
use sequoia_openpgp::crypto::{Password, SessionKey};
use sequoia_openpgp::packet::{PKESK, SKESK};
use sequoia_openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use sequoia_openpgp::parse::Parse as _;
use sequoia_openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message};
use sequoia_openpgp::serialize::Serialize as _;
use sequoia_openpgp::types::SymmetricAlgorithm;
use sequoia_openpgp::{Cert, KeyHandle};
use zeroize::Zeroizing;

use crate::header::PreferEncrypt;
use crate::SetupError;

const BEGIN_MESSAGE: &str = "-----BEGIN PGP MESSAGE-----";
const END_MESSAGE: &str = "-----END PGP MESSAGE-----";
const END_SECRET_KEY: &str = "-----END PGP PRIVATE KEY BLOCK-----";
/// The decrypted payload is an armored secret key: a few KiB. Anything far
/// larger is not a setup message and is refused rather than buffered.
const MAX_PAYLOAD: u64 = 1024 * 1024;

/// A Setup Code: 36 digits in nine dash-separated blocks of four. The
/// dashes are part of the passphrase. Zeroized on drop.
pub struct SetupCode(Zeroizing<String>);

impl SetupCode {
    /// Generates a fresh code from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let digits: Zeroizing<Vec<u8>> =
            Zeroizing::new((0..36).map(|_| b'0' + rng.gen_range(0..10u8)).collect());
        Self::from_digits(&digits)
    }

    /// Reads a code as a person types it: digits with or without dashes and
    /// spaces.
    pub fn parse(input: &str) -> Result<Self, SetupError> {
        let digits: Zeroizing<Vec<u8>> = Zeroizing::new(
            input
                .bytes()
                .filter(|b| !matches!(b, b'-' | b' ' | b'\t' | b'\r' | b'\n'))
                .collect(),
        );
        if digits.len() != 36 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(SetupError::BadCodeFormat(
                digits.iter().filter(|b| b.is_ascii_digit()).count(),
            ));
        }
        Ok(Self::from_digits(&digits))
    }

    fn from_digits(digits: &[u8]) -> Self {
        let mut code = Zeroizing::new(String::with_capacity(44));
        for (i, block) in digits.chunks(4).enumerate() {
            if i > 0 {
                code.push('-');
            }
            // Digits are ASCII.
            code.push_str(std::str::from_utf8(block).unwrap_or_default());
        }
        SetupCode(code)
    }

    /// The code with dashes, as the passphrase and for showing to the user.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first two digits, revealed in the `Passphrase-Begin` armor header.
    pub fn begin(&self) -> &str {
        &self.0[..2]
    }
}

impl std::fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SetupCode({}…)", self.begin())
    }
}

/// A secret key recovered from a setup message.
pub struct ImportedKey {
    /// The transferable secret key.
    pub cert: Cert,
    /// The `Autocrypt-Prefer-Encrypt` armor header of the key.
    pub prefer_encrypt: PreferEncrypt,
}

/// Encrypts `cert` (which must hold secret keys) with `code` and returns the
/// armored `PGP MESSAGE` block with the `Passphrase-Format` and
/// `Passphrase-Begin` headers.
pub fn encrypt_key(
    cert: &Cert,
    prefer_encrypt: PreferEncrypt,
    code: &SetupCode,
) -> Result<String, SetupError> {
    if !cert.is_tsk() {
        return Err(SetupError::NotASecretKey);
    }
    let mut armored_key = Zeroizing::new(Vec::new());
    {
        let mut w = armor::Writer::with_headers(
            &mut *armored_key,
            armor::Kind::SecretKey,
            [("Autocrypt-Prefer-Encrypt", prefer_encrypt.as_str())],
        )?;
        cert.as_tsk().serialize(&mut w)?;
        w.finalize()?;
    }
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = Armorer::new(message)
        .kind(armor::Kind::Message)
        .add_header("Passphrase-Format", "numeric9x4")
        .add_header("Passphrase-Begin", code.begin())
        .build()?;
    let message = Encryptor::with_passwords(message, [Password::from(code.as_str())])
        .symmetric_algo(SymmetricAlgorithm::AES256)
        .build()?;
    let mut message = LiteralWriter::new(message).build()?;
    message
        .write_all(&armored_key)
        .map_err(|e| SetupError::OpenPgp(e.to_string()))?;
    message.finalize()?;
    String::from_utf8(sink).map_err(|e| SetupError::OpenPgp(e.to_string()))
}

/// Builds the whole Setup Message (RFC 5322, CRLF line endings) for `addr`,
/// to be sent to the user's own address. `date` is a ready RFC 5322 date.
pub fn create_message(
    cert: &Cert,
    addr: &str,
    prefer_encrypt: PreferEncrypt,
    code: &SetupCode,
    date: &str,
) -> Result<Vec<u8>, SetupError> {
    let armored = encrypt_key(cert, prefer_encrypt, code)?;
    let boundary = format!("setup-{:032x}", rand::random::<u128>());
    let body = format!(
        "From: <{addr}>\n\
         To: <{addr}>\n\
         Date: {date}\n\
         Subject: Autocrypt Setup Message\n\
         Autocrypt-Setup-Message: v1\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"{boundary}\"\n\
         \n\
         --{boundary}\n\
         Content-Type: text/plain; charset=utf-8\n\
         \n\
         This message contains your secret key, encrypted with a Setup Code\n\
         that starts with {begin}. Keep it as a backup, or import it on another\n\
         device with `keytool setup-message import` and the Setup Code.\n\
         --{boundary}\n\
         Content-Type: application/autocrypt-setup\n\
         Content-Disposition: attachment; filename=\"autocrypt-setup-message.html\"\n\
         \n\
         <html><body>\n\
         <p>This is the Autocrypt setup file used to transfer settings and keys\n\
         between clients. Decrypt it with the Setup Code shown on the old device.</p>\n\
         <pre>\n\
         {armored}\
         </pre></body></html>\n\
         --{boundary}--\n",
        begin = code.begin(),
    );
    Ok(body.replace('\n', "\r\n").into_bytes())
}

/// Imports a Setup Message (the whole message or just its armored block)
/// with the user's `code`. Anything encrypted to a public key is refused:
/// an attacker could otherwise make us import a key of their choosing.
pub fn import(message: &[u8], code: &SetupCode) -> Result<ImportedKey, SetupError> {
    let block = armored_block(message)?;
    let helper = SetupHelper {
        password: Password::from(code.as_str()),
        saw_pkesk: false,
        wrong_code: false,
    };
    let decryptor = DecryptorBuilder::from_bytes(block)
        .and_then(|b| b.with_policy(crate::policy(), None, helper));
    let mut decryptor = match decryptor {
        Ok(d) => d,
        Err(e) => return Err(classify(e)),
    };
    let mut plain = Zeroizing::new(Vec::new());
    (&mut decryptor)
        .take(MAX_PAYLOAD)
        .read_to_end(&mut plain)
        .map_err(|e| SetupError::Damaged(e.to_string()))?;
    if !decryptor.message_processed() {
        return Err(SetupError::Damaged(
            "the encrypted payload is too large or incomplete".into(),
        ));
    }
    parse_secret_key(&plain)
}

fn classify(e: sequoia_openpgp::anyhow::Error) -> SetupError {
    match e.downcast_ref::<SetupFailure>() {
        Some(SetupFailure::PublicKey) => SetupError::PublicKeyEncrypted,
        Some(SetupFailure::WrongCode) => SetupError::WrongCode,
        None => SetupError::Damaged(format!("{e:#}")),
    }
}

fn armored_block(message: &[u8]) -> Result<&[u8], SetupError> {
    let start = find(message, BEGIN_MESSAGE.as_bytes()).ok_or(SetupError::NoArmoredBlock)?;
    let rest = &message[start..];
    let end = find(rest, END_MESSAGE.as_bytes()).ok_or(SetupError::NoArmoredBlock)?;
    Ok(&rest[..end + END_MESSAGE.len()])
}

fn parse_secret_key(plain: &[u8]) -> Result<ImportedKey, SetupError> {
    // Level 1: everything after the first armor end line is ignored.
    let end = find(plain, END_SECRET_KEY.as_bytes())
        .map(|i| i + END_SECRET_KEY.len())
        .unwrap_or(plain.len());
    let armored = &plain[..end];
    let mut reader = armor::Reader::from_bytes(
        armored,
        armor::ReaderMode::Tolerant(Some(armor::Kind::SecretKey)),
    );
    let prefer_encrypt = reader
        .headers()
        .map_err(|_| SetupError::NoSecretKey)?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Autocrypt-Prefer-Encrypt"))
        .map(|(_, v)| PreferEncrypt::from_value(v))
        .unwrap_or_default();
    let mut binary = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut binary)
        .map_err(|_| SetupError::NoSecretKey)?;
    let cert = Cert::from_bytes(&*binary).map_err(|_| SetupError::NoSecretKey)?;
    if !cert.is_tsk() {
        return Err(SetupError::NoSecretKey);
    }
    Ok(ImportedKey {
        cert,
        prefer_encrypt,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[derive(Debug, thiserror::Error)]
enum SetupFailure {
    #[error("encrypted to a public key")]
    PublicKey,
    #[error("wrong setup code")]
    WrongCode,
}

struct SetupHelper {
    password: Password,
    saw_pkesk: bool,
    wrong_code: bool,
}

impl VerificationHelper for SetupHelper {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> sequoia_openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }

    fn check(&mut self, _structure: MessageStructure) -> sequoia_openpgp::Result<()> {
        // Setup messages are not signed; the code authenticates them.
        Ok(())
    }
}

impl DecryptionHelper for SetupHelper {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        skesks: &[SKESK],
        _sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> sequoia_openpgp::Result<Option<Cert>> {
        if !pkesks.is_empty() {
            self.saw_pkesk = true;
            return Err(SetupFailure::PublicKey.into());
        }
        for skesk in skesks {
            if let Ok((algo, sk)) = skesk.decrypt(&self.password) {
                let allowed = matches!(
                    algo,
                    None | Some(SymmetricAlgorithm::AES128)
                        | Some(SymmetricAlgorithm::AES192)
                        | Some(SymmetricAlgorithm::AES256)
                );
                if allowed && decrypt(algo, &sk) {
                    return Ok(None);
                }
            }
        }
        self.wrong_code = true;
        Err(SetupFailure::WrongCode.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::generate;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn code_format() {
        let code = SetupCode::generate();
        assert_eq!(code.as_str().len(), 44);
        assert_eq!(code.as_str().split('-').count(), 9);
        assert!(code.as_str().split('-').all(|b| b.len() == 4));
        let typed = code.as_str().replace('-', " ");
        assert_eq!(SetupCode::parse(&typed).unwrap().as_str(), code.as_str());
        assert!(matches!(
            SetupCode::parse("1234-5678"),
            Err(SetupError::BadCodeFormat(8))
        ));
        assert!(!format!("{code:?}").contains(&code.as_str()[3..]));
    }

    #[test]
    fn round_trip_and_wrong_code() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cert = generate("alice@example.org", t).unwrap();
        let code = SetupCode::generate();
        let msg = create_message(
            &cert,
            "alice@example.org",
            PreferEncrypt::Mutual,
            &code,
            "Tue, 14 Nov 2023 22:13:20 +0000",
        )
        .unwrap();
        let text = String::from_utf8(msg.clone()).unwrap();
        assert!(text.contains("Passphrase-Format: numeric9x4"));
        assert!(text.contains(&format!("Passphrase-Begin: {}", code.begin())));
        assert!(text.contains("Autocrypt-Setup-Message: v1"));
        let imported = import(&msg, &code).unwrap();
        assert_eq!(imported.cert.fingerprint(), cert.fingerprint());
        assert!(imported.cert.is_tsk());
        assert_eq!(imported.prefer_encrypt, PreferEncrypt::Mutual);

        let other = SetupCode::generate();
        assert!(matches!(import(&msg, &other), Err(SetupError::WrongCode)));
        assert!(matches!(
            import(b"no armor here", &code),
            Err(SetupError::NoArmoredBlock)
        ));
    }

    #[test]
    fn refuses_public_key_encryption() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let victim = generate("alice@example.org", t).unwrap();
        let attacker_key = generate("mallory@example.org", t).unwrap();
        // A message encrypted to the victim's public key (as an attacker
        // could produce) holding the attacker's secret key.
        let mut sink = Vec::new();
        {
            let message = Message::new(&mut sink);
            let message = Armorer::new(message).build().unwrap();
            let recipients = victim
                .keys()
                .with_policy(crate::policy(), t)
                .for_transport_encryption()
                .map(|ka| ka.key().clone())
                .collect::<Vec<_>>();
            let message = Encryptor::for_recipients(
                message,
                recipients
                    .iter()
                    .map(|k| sequoia_openpgp::serialize::stream::Recipient::new(None, None, k)),
            )
            .build()
            .unwrap();
            let mut w = LiteralWriter::new(message).build().unwrap();
            let mut armored = Vec::new();
            let mut a = armor::Writer::new(&mut armored, armor::Kind::SecretKey).unwrap();
            attacker_key.as_tsk().serialize(&mut a).unwrap();
            a.finalize().unwrap();
            w.write_all(&armored).unwrap();
            w.finalize().unwrap();
        }
        let code = SetupCode::generate();
        assert!(matches!(
            import(&sink, &code),
            Err(SetupError::PublicKeyEncrypted)
        ));
    }
}
