//! A private certificate authority and a server certificate for
//! `localhost`/`127.0.0.1` (and names a test adds), made with the `openssl`
//! command line.

use std::path::{Path, PathBuf};

use crate::{path_str, run};

/// A CA certificate (what `ca_file` points at) and a server key pair it signed.
#[derive(Debug, Clone)]
pub struct TestCa {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    /// Creates the CA and the server certificate in `dir`.
    pub fn create(dir: &Path) -> Self {
        Self::create_for(dir, &[])
    }

    /// The same, the server certificate also naming `hosts` (a test's web
    /// servers under made-up domains).
    pub fn create_for(dir: &Path, hosts: &[&str]) -> Self {
        let ca_key = dir.join("ca.key");
        let ca_cert = dir.join("ca.pem");
        let server_key = dir.join("server.key");
        let csr = dir.join("server.csr");
        let server_cert = dir.join("server.pem");
        let ext = dir.join("server.ext");
        let names: String = hosts.iter().map(|h| format!(",DNS:{h}")).collect();
        std::fs::write(
            &ext,
            format!("subjectAltName=DNS:localhost,IP:127.0.0.1{names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
        )
        .expect("writing the extension file");
        self_signed("/CN=Letterlock Test CA", &[], &ca_key, &ca_cert);
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                path_str(&server_key),
                "-out",
                path_str(&csr),
            ],
            None,
        );
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                path_str(&csr),
                "-CA",
                path_str(&ca_cert),
                "-CAkey",
                path_str(&ca_key),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                path_str(&ext),
                "-out",
                path_str(&server_cert),
            ],
            None,
        );
        TestCa {
            ca_cert,
            server_cert,
            server_key,
        }
    }
}

/// A self-signed certificate made the usual way (`openssl req -x509`,
/// which marks it as a CA): the test CA, and a home server's certificate.
pub(crate) fn self_signed(subject: &str, extra: &[&str], key: &Path, cert: &Path) {
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        subject,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-keyout", path_str(key), "-out", path_str(cert)]);
    run("openssl", &args, None);
}
