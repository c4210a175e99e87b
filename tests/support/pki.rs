//! Certificates for the TLS tests: a CA and the certificates it signs, made with openssl (Debian's
//! openssl) in a directory of the test's own.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use super::TempDir;

/// A CA and certificates it signs, made with openssl in a directory of the test's own.
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = TempDir::new(tag);
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let pki = Pki { dir };
        pki.ca("ca");
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    pub fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(&self.dir.0).output().expect("openssl (Debian's openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A self-signed CA: NAME.pem and NAME.key.
    pub fn ca(&self, name: &str) {
        let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
        let subject = format!("/CN=daemon test {name}");
        self.openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject]);
    }

    /// A certificate for `cn` (and localhost, 127.0.0.1) that `ca` signs, valid for `days` (a
    /// negative number: expired): NAME.pem (with the CA after it, a chain) and NAME.key (0600).
    pub fn issue(&self, name: &str, ca: &str, cn: &str, days: i32) {
        let (key, csr, leaf) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.leaf"));
        self.openssl(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={cn}")]);
        std::fs::write(self.path("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n").expect("ext");
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        self.openssl(&["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-CAcreateserial", "-out", &leaf, "-days", &days.to_string(), "-extfile", "ext"]);
        let chain = [std::fs::read(self.path(&leaf)).expect("leaf"), std::fs::read(self.path(&ca_pem)).expect("ca")].concat();
        std::fs::write(self.path(&format!("{name}.pem")), chain).expect("chain");
        std::fs::set_permissions(self.path(&key), std::fs::Permissions::from_mode(0o600)).expect("chmod the key");
    }
}

