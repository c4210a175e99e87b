//! Reading the certificate, its key and the client CAs: PEM files, each opened once (without
//! blocking: a FIFO put in a file's place cannot hang the manager) and checked by what was
//! opened. A file another user may change is refused, since whoever changes the certificate, the
//! key or the CAs clients are checked against is the server; a key others may read is refused
//! too (as ssh refuses an unprotected key). A certificate that has expired, or is not valid
//! yet, is refused with its dates: either would make every handshake fail while the daemon
//! looked healthy.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A file's whole contents, read from one descriptor, if it is a regular file that only root or
/// the daemon's user may change.
fn read(path: &Path, what: &str, daemon_uid: Option<u32>) -> Result<(Vec<u8>, std::fs::Metadata), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let meta = file.metadata().map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{what} {}: not a regular file", path.display()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if !(meta.uid() == 0 || meta.uid() == me || daemon_uid == Some(meta.uid())) {
        return Err(format!("{what} {}: owned by uid {}, who could replace it: give it to root or the daemon's user", path.display(), meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("{what} {}: mode {:o} lets other users change it: chmod go-w", path.display(), meta.mode() & 0o7777));
    }
    // A key or a chain is a few kilobytes; a file far larger is not one.
    const MOST: u64 = 1 << 20;
    if meta.len() > MOST {
        return Err(format!("{what} {}: {} bytes, too large for PEM certificates or a key", path.display(), meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.by_ref().take(MOST).read_to_end(&mut bytes).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    Ok((bytes, meta))
}

/// The certificate chain: the server's certificate first, then its intermediates.
pub(super) fn certificates(path: &Path, now_unix: i64, daemon_uid: Option<u32>) -> Result<Vec<CertificateDer<'static>>, String> {
    let (bytes, _) = read(path, "tls_cert", daemon_uid)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls_cert {}: not PEM certificates ({e})", path.display()))?;
    let Some(first) = chain.first() else {
        return Err(format!("tls_cert {}: no certificate in it (a PEM file with -----BEGIN CERTIFICATE-----)", path.display()));
    };
    let (_, cert) = x509_parser::parse_x509_certificate(first).map_err(|e| format!("tls_cert {}: its first certificate cannot be read ({e})", path.display()))?;
    let validity = cert.validity();
    let (from, until) = (validity.not_before.timestamp(), validity.not_after.timestamp());
    if now_unix > until {
        return Err(format!("tls_cert {}: the certificate expired on {}: renew it", path.display(), validity.not_after));
    }
    if now_unix < from {
        return Err(format!("tls_cert {}: the certificate is not valid before {}: check the clock, or the certificate", path.display(), validity.not_before));
    }
    Ok(chain)
}

/// The private key, if only its owner (root, or the daemon's user) may read and change it; its
/// group may read it (Debian's `ssl-cert` group: `group = "ssl-cert"` lets a daemon that
/// drops privileges read it again on a reload).
pub(super) fn private_key(path: &Path, daemon_uid: Option<u32>) -> Result<PrivateKeyDer<'static>, String> {
    let (bytes, meta) = read(path, "tls_key", daemon_uid)?;
    if meta.mode() & 0o004 != 0 {
        return Err(format!(
            "tls_key {}: mode {:o} lets other users read it or change it: chmod 600 (or 640, for a group of readers such as ssl-cert)",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| format!("tls_key {}: not a PEM private key, PKCS#8, PKCS#1 or SEC1 ({e})", path.display()))
}

/// The CAs whose certificates clients must present (`tls_client_ca`), and a digest of the file
/// (what a session ticket was issued under).
pub(super) fn client_cas(path: &Path, daemon_uid: Option<u32>) -> Result<(rustls::RootCertStore, Vec<u8>), String> {
    let (bytes, _) = read(path, "tls_client_ca", daemon_uid)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref().to_vec();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| format!("tls_client_ca {}: not PEM certificates ({e})", path.display()))?;
        roots.add(cert).map_err(|e| format!("tls_client_ca {}: a certificate cannot be used as a CA ({e})", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("tls_client_ca {}: no certificate in it", path.display()));
    }
    Ok((roots, digest))
}
