//! TLS on the TCP listeners (`tls_cert`, `tls_key`, `tls_client_ca`), against real clients:
//! curl with a test CA the test makes with openssl, `openssl s_client` for ALPN and session
//! resumption across workers, a certificate swap by a reload under load, files that must be
//! refused, mutual TLS, and clients that never finish their handshake.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use support::*;

/// `GET path` over TLS with curl, trusting `ca` (a PEM file): the status (0 if the connection or
/// the handshake failed) and the body.
fn curl(port: u16, path: &str, ca: &Path, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(extra)
        .arg(format!("https://localhost:{port}{path}"))
        .stderr(Stdio::null())
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// `openssl s_client` sends `GET path` and prints the session; with `sess_in`, resumes the
/// session saved there; with `sess_out`, saves this one.
fn s_client(port: u16, path: &str, ca: &Path, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost", "-CAfile"])
        .arg(ca)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes());
        // s_client ends when the server closes after its answer (stdin stays open until then).
        let answered = child.stdout.take().expect("stdout");
        let out = std::io::read_to_string(answered).unwrap_or_default();
        drop(stdin);
        let _ = child.wait();
        out
    }
}

fn serve_tls(pki: &Pki, cert: &str, extra: &[&str]) -> Daemon {
    let (c, k) = (pki.arg(&format!("{cert}.pem")), pki.arg(&format!("{cert}.key")));
    let mut args = vec!["--tls-cert", c.as_str(), "--tls-key", k.as_str()];
    args.extend_from_slice(extra);
    let d = Daemon::serve("lab", &args);
    d.wait_for_line("pool ready", SOON);
    d
}

#[test]
fn curl_gets_an_answer_over_tls_with_sni_and_alpn() {
    let pki = Pki::new("tls-curl");
    pki.issue("server", "ca", "localhost", 1);
    let d = serve_tls(&pki, "server", &["--workers", "2"]);
    let (code, body) = curl(d.port(), "/", &pki.path("ca.pem"), &[]);
    assert_eq!((code, body.as_str()), (200, "hello\n"));
    let (code, body) = curl(d.port(), "/tls", &pki.path("ca.pem"), &[]);
    assert_eq!(code, 200);
    assert!(body.starts_with("sni=localhost alpn=http/1.1 resumed=false client_certs=0"), "{body}");
    // Plaintext gets no answer: its request is not a handshake.
    assert!(http_get(d.port(), "/").is_err(), "a plaintext request was answered");
    // s_client offers ALPN; the daemon picks what it serves.
    let out = s_client(d.port(), "/", &pki.path("ca.pem"), &["-alpn", "h2,http/1.1"]);
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
}

#[test]
fn a_session_resumes_on_another_worker() {
    let pki = Pki::new("tls-resume");
    pki.issue("server", "ca", "localhost", 1);
    let d = serve_tls(&pki, "server", &["--workers", "4"]);
    let ca = pki.path("ca.pem");
    let session = pki.arg("session.pem");
    let first = s_client(d.port(), "/tls", &ca, &["-sess_out", &session]);
    let pid_of = |out: &str| out.split("pid=").nth(1).and_then(|r| r.split_whitespace().next()).map(str::to_string);
    let first_pid = pid_of(&first).unwrap_or_else(|| panic!("an answer: {first}"));
    // Each resumption is accepted by whichever worker the kernel wakes: until one lands on
    // another worker than the one that issued the ticket, every one of them must resume.
    let mut elsewhere = false;
    for _ in 0..40 {
        let out = s_client(d.port(), "/tls", &ca, &["-sess_in", &session]);
        assert!(out.contains("Reused, TLSv1.3"), "not resumed: {out}");
        assert!(out.contains("resumed=true"), "{out}");
        if pid_of(&out).is_some_and(|p| p != first_pid) {
            elsewhere = true;
            break;
        }
    }
    assert!(elsewhere, "every resumption landed on worker {first_pid}");
}

#[test]
fn a_reload_swaps_the_certificate_under_load_and_bad_files_keep_the_old_one() {
    let pki = Pki::new("tls-swap");
    pki.ca("ca2");
    pki.issue("server", "ca", "localhost", 1);
    pki.issue("next", "ca2", "localhost", 1);
    pki.issue("stale", "ca", "localhost", -1);
    let both = pki.path("both.pem");
    std::fs::write(&both, [std::fs::read(pki.path("ca.pem")).unwrap(), std::fs::read(pki.path("ca2.pem")).unwrap()].concat()).expect("bundle");
    // The files the daemon reads; the test puts other contents in them.
    let (cert, key) = (pki.path("live.pem"), pki.path("live.key"));
    let install = |name: &str| {
        std::fs::copy(pki.path(&format!("{name}.pem")), &cert).expect("cert");
        std::fs::copy(pki.path(&format!("{name}.key")), &key).expect("key");
    };
    install("server");
    let app = App::start("tls-swap", &["--tls-cert", &cert.display().to_string(), "--tls-key", &key.display().to_string()]);
    let port = app.port();
    assert_eq!(curl(port, "/", &pki.path("ca.pem"), &[]).0, 200);
    assert_eq!(curl(port, "/", &pki.path("ca2.pem"), &[]).0, 0, "not yet the next certificate");
    // Clients that trust both CAs, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, both) = (Arc::clone(&stop), both.clone());
            std::thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match curl(port, "/", &both, &[]) {
                        (200, body) if body == "hello\n" => ok += 1,
                        other => failed.push(other),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    // Files that cannot be used: the reload is refused, naming the file and why, and the
    // certificate served stays.
    let reload_refused = |why: &str| {
        let out = app.control(&["reload"]);
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "the reload must be refused: {said}");
        assert!(said.contains(why), "{why:?} not in: {said}");
        assert_eq!(curl(port, "/", &pki.path("ca.pem"), &[]).0, 200, "the old certificate still served");
    };
    std::fs::copy(pki.path("next.key"), &key).expect("a key of another certificate");
    reload_refused("is not the key of the certificate");
    install("stale");
    reload_refused("the certificate expired on");
    install("next");
    std::fs::remove_file(&key).expect("rm");
    reload_refused(&format!("tls_key {}: No such file", key.display()));
    install("next");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    reload_refused("lets other users read it or change it: chmod 600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The renewed pair: the reload's new workers serve it.
    let g = generation(&app);
    let out = app.control(&["reload"]);
    assert!(out.status.success(), "reload: {out:?}\n{}", app.log_text());
    wait_until(SOON, "the new generation ready", || ready_at(&app, g + 1));
    assert_eq!(curl(port, "/", &pki.path("ca2.pem"), &[]).0, 200, "the next certificate is served");
    // And an upgrade's new manager reads it at its start.
    let out = app.upgrade(&[]);
    assert!(out.status.success(), "upgrade: {out:?}\n{}", app.log_text());
    app.settle();
    assert_eq!(curl(port, "/", &pki.path("ca2.pem"), &[]).0, 200);
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for t in load {
        let (o, f) = t.join().expect("a client");
        ok += o;
        failed.extend(f);
    }
    assert!(failed.is_empty(), "{} of {} requests failed: {:?}", failed.len(), ok as usize + failed.len(), &failed[..failed.len().min(5)]);
    assert!(ok > 10, "only {ok} requests");
}

#[test]
fn files_that_cannot_be_served_stop_the_start_with_the_reason() {
    let pki = Pki::new("tls-refused");
    pki.issue("server", "ca", "localhost", 1);
    pki.issue("other", "ca", "localhost", 1);
    pki.issue("stale", "ca", "localhost", -1);
    let start = |cert: &str, key: &str, extra: &[&str]| -> (Option<i32>, String) {
        let (c, k) = (pki.arg(cert), pki.arg(key));
        let mut args = vec!["--tls-cert", c.as_str(), "--tls-key", k.as_str()];
        args.extend_from_slice(extra);
        let (code, _, err) = Daemon::run_to_exit("lab", &args, &[]);
        (code, err)
    };
    let (code, err) = start("server.pem", "other.key", &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is not the key of the certificate"), "{err}");
    let (code, err) = start("stale.pem", "stale.key", &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("the certificate expired on"), "{err}");
    std::fs::set_permissions(pki.path("server.key"), std::fs::Permissions::from_mode(0o604)).expect("chmod");
    let (code, err) = start("server.pem", "server.key", &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("mode 604 lets other users read it"), "{err}");
    std::fs::set_permissions(pki.path("server.key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, err) = start("server.key", "server.key", &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no certificate in it"), "{err}");
    // Half a pair is a configuration error.
    let (code, _, err) = Daemon::run_to_exit("lab", &["--tls-cert", &pki.arg("server.pem")], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("tls_cert is set without tls_key"), "{err}");
    // The classic model cannot serve TLS, and says so before it serves anything.
    let (code, _, err) = Daemon::run_to_exit("lab_classic", &["--tls-cert", &pki.arg("server.pem"), "--tls-key", &pki.arg("server.key")], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("the classic model (a plain fn on_accept handler) cannot serve TLS"), "{err}");
}

#[test]
fn a_key_only_root_may_read_serves_a_daemon_that_runs_as_nobody() {
    let pki = Pki::new("tls-root-key");
    pki.issue("server", "ca", "localhost", 1);
    // 0600 root: nobody cannot read it; the manager reads it before it drops privileges.
    let d = serve_tls(&pki, "server", &["--workers", "1", "--user", "nobody"]);
    assert_eq!(curl(d.port(), "/", &pki.path("ca.pem"), &[]).0, 200);
}

#[test]
fn mutual_tls_asks_every_client_for_a_certificate_of_the_client_ca() {
    let pki = Pki::new("tls-mutual");
    pki.ca("clients");
    pki.issue("server", "ca", "localhost", 1);
    pki.issue("alice", "clients", "alice", 1);
    pki.issue("mallory", "ca", "mallory", 1);
    let d = serve_tls(&pki, "server", &["--workers", "1", "--tls-client-ca", &pki.arg("clients.pem")]);
    let ca = pki.path("ca.pem");
    assert_eq!(curl(d.port(), "/", &ca, &[]).0, 0, "no client certificate");
    let (alice, alice_key) = (pki.arg("alice.pem"), pki.arg("alice.key"));
    let (code, body) = curl(d.port(), "/tls", &ca, &["--cert", &alice, "--key", &alice_key]);
    assert_eq!(code, 200);
    assert!(body.contains("client_certs=2"), "alice's certificate and its CA: {body}");
    let (mallory, mallory_key) = (pki.arg("mallory.pem"), pki.arg("mallory.key"));
    assert_eq!(curl(d.port(), "/", &ca, &["--cert", &mallory, "--key", &mallory_key]).0, 0, "a certificate of another CA");
}

#[test]
fn a_thousand_clients_that_never_finish_the_handshake_take_no_slot_for_long() {
    let pki = Pki::new("tls-stall");
    pki.issue("server", "ca", "localhost", 1);
    let d = serve_tls(&pki, "server", &["--workers", "2", "--max-children", "2", "--clients", "100", "--keepalive-timeout", "3s"]);
    // Each connects and sends nothing, or half a ClientHello, and waits.
    let mut stalled = Vec::new();
    for i in 0..1000 {
        let mut c = connect(d.port()).expect("connect");
        if i % 2 == 0 {
            use std::io::Write;
            let _ = c.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
        }
        stalled.push(c);
    }
    // A real client is still served: the workers let the silent ones go for it.
    let (code, body) = curl(d.port(), "/", &pki.path("ca.pem"), &[]);
    assert_eq!((code, body.as_str()), (200, "hello\n"));
    // And none of them is held past keepalive_timeout: each is closed.
    for c in stalled.iter_mut().step_by(50) {
        use std::io::Read;
        c.set_read_timeout(Some(SOON)).expect("timeout");
        let mut buf = [0u8; 64];
        match c.read(&mut buf) {
            // Closed; or a TLS alert first (to the half ClientHello), then closed.
            Ok(0) => {}
            Ok(_) if buf[0] == 0x15 => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a stalled handshake still holds its connection: {other:?}"),
        }
    }
}

#[test]
fn a_ticket_does_not_outlive_the_client_cas_it_was_issued_under() {
    let pki = Pki::new("tls-ticket-ca");
    pki.ca("clients");
    pki.ca("others");
    pki.issue("server", "ca", "localhost", 1);
    pki.issue("alice", "clients", "alice", 1);
    pki.issue("mallory", "others", "mallory", 1);
    // Both client CAs at first; then only alice's.
    let cas = pki.path("client-cas.pem");
    let both = [std::fs::read(pki.path("clients.pem")).unwrap(), std::fs::read(pki.path("others.pem")).unwrap()].concat();
    std::fs::write(&cas, &both).expect("the CA file");
    let app = App::start("tls-ticket-ca", &["--tls-cert", &pki.arg("server.pem"), "--tls-key", &pki.arg("server.key"), "--tls-client-ca", &cas.display().to_string()]);
    let port = app.port();
    let ca = pki.path("ca.pem");
    let (mallory, mallory_key, session) = (pki.arg("mallory.pem"), pki.arg("mallory.key"), pki.arg("mallory.session"));
    let first = s_client(port, "/tls", &ca, &["-cert", &mallory, "-key", &mallory_key, "-sess_out", &session]);
    assert!(first.contains("HTTP/1.1 200") && !first.contains("client_certs=0"), "mallory's certificate is accepted: {first}");
    // A reload that keeps the CAs keeps the tickets.
    let g = generation(&app);
    assert!(app.control(&["reload"]).status.success());
    wait_until(SOON, "the new generation ready", || ready_at(&app, g + 1));
    let again = s_client(port, "/tls", &ca, &["-cert", &mallory, "-key", &mallory_key, "-sess_in", &session, "-sess_out", &session]);
    assert!(again.contains("Reused, TLSv1.3"), "{again}");
    // Mallory's CA is no longer trusted: the ticket no longer resumes, and a full handshake
    // refuses the certificate.
    std::fs::write(&cas, std::fs::read(pki.path("clients.pem")).unwrap()).expect("the CA file");
    let g = generation(&app);
    assert!(app.control(&["reload"]).status.success());
    wait_until(SOON, "the new generation ready", || ready_at(&app, g + 1));
    let after = s_client(port, "/tls", &ca, &["-cert", &mallory, "-key", &mallory_key, "-sess_in", &session]);
    assert!(!after.contains("Reused") && !after.contains("resumed=true"), "{after}");
    assert!(!after.contains("HTTP/1.1 200"), "mallory was served: {after}");
}

#[test]
fn a_fifo_or_a_file_others_may_change_is_refused_without_hanging() {
    let pki = Pki::new("tls-fifo");
    pki.issue("server", "ca", "localhost", 1);
    let fifo = pki.path("cert.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let (code, _, err) = Daemon::run_to_exit("lab", &["--tls-cert", &fifo.display().to_string(), "--tls-key", &pki.arg("server.key")], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a regular file"), "{err}");
    // A certificate or CA file others may write could make anyone the server, or a trusted
    // client.
    std::fs::set_permissions(pki.path("ca.pem"), std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (code, _, err) = Daemon::run_to_exit("lab", &["--tls-cert", &pki.arg("server.pem"), "--tls-key", &pki.arg("server.key"), "--tls-client-ca", &pki.arg("ca.pem")], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("lets other users change it: chmod go-w"), "{err}");
}
