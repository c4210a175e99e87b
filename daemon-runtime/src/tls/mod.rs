//! TLS on the TCP listeners (`tls_cert`, `tls_key`, `tls_client_ca`; the `tls` feature), with
//! rustls. The manager reads the files (at start as root, before privileges are dropped; again
//! at each reload) and builds the server's configuration before it forks, so every worker of a
//! generation serves the same certificate and shares the same session tickets; a reload whose
//! files cannot be used is refused whole, and the running generation serves on. Workers do the
//! handshake in the connection's first reads (`TlsStream`).

mod files;
mod stream;
mod tickets;

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

pub use stream::{TlsInfo, TlsStream};

/// The configuration new workers serve: set by the manager before it forks them.
static CURRENT: RwLock<Option<Arc<rustls::ServerConfig>>> = RwLock::new(None);

/// The ticket secrets the last configuration was built with (the newest first), and the client
/// CAs (a digest of `tls_client_ca`, empty for none) their tickets were issued under.
static SECRETS: Mutex<(Vec<tickets::Secret>, Vec<u8>)> = Mutex::new((Vec::new(), Vec::new()));

/// The configuration a new connection gets, if TLS is on.
pub(crate) fn current() -> Option<Arc<rustls::ServerConfig>> {
    CURRENT.read().ok()?.clone()
}

/// Reads the files `config` names and makes them what new workers serve, with a new ticket
/// secret (the last one still opens tickets); with no `tls_cert`, TLS is off for new workers.
/// On an error, nothing changes. `daemon_uid`: the user the daemon runs as, which may own the key.
pub(crate) fn load(config: &daemon_config::Config, daemon_uid: Option<u32>) -> Result<(), String> {
    let (Some(cert), Some(key)) = (config.tls_cert.as_deref(), config.tls_key.as_deref()) else {
        if let Ok(mut current) = CURRENT.write() {
            *current = None;
        }
        return Ok(());
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let chain = files::certificates(Path::new(cert), now, daemon_uid)?;
    let key_der = files::private_key(Path::new(key), daemon_uid)?;
    // ring, for its build (a C compiler, seconds) where aws-lc-rs needs minutes; rustls 0.23.48
    // deprecates it for lacking post-quantum key exchange (X25519MLKEM768): clients that offer it
    // fall back to X25519.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut client_auth = Vec::new();
    let builder = match config.tls_client_ca.as_deref() {
        Some(ca) => {
            let (roots, digest) = files::client_cas(Path::new(ca), daemon_uid)?;
            client_auth = digest;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("tls_client_ca {ca}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_single_cert(chain, key_der).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!("tls_key {key} is not the key of the certificate in tls_cert {cert}: give the pair that belongs together"),
        other => format!("tls_cert {cert} with tls_key {key}: {other}"),
    })?;
    // The protocols the handshake may agree on (`tls_alpn`), in the server's order.
    server.alpn_protocols = config.tls_alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // Tickets every worker opens (TLS 1.3 resumption goes through them, not a per-process cache).
    // A resumed session is not checked against the client CAs again: tickets issued under
    // other CAs (or none) must not open any more, so the last secret is kept only if they are
    // the same.
    let mut secrets = SECRETS.lock().map_err(|_| "TLS: the ticket secrets are poisoned".to_string())?;
    let mut next = vec![tickets::new_secret()?];
    if secrets.1 == client_auth {
        next.extend(secrets.0.first().copied());
    }
    server.ticketer = Arc::new(tickets::Tickets::new(next.clone()));
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    *secrets = (next, client_auth);
    let mut current = CURRENT.write().map_err(|_| "TLS: the configuration is poisoned".to_string())?;
    *current = Some(Arc::new(server));
    tracing::info!(cert, key, client_ca = config.tls_client_ca.as_deref().unwrap_or("none"), "TLS: serving the certificate on the TCP listeners");
    Ok(())
}
