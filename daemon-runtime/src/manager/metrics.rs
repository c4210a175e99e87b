//! `GET /metrics` in Prometheus's text format (`metrics_listen`), answered by the manager from its
//! own poll loop: no thread, no async runtime. Every socket is non-blocking, a request must come
//! whole within 5 s, at most 16 clients are served at once (a new one pushes out the one that
//! waited longest), and 64 are accepted per wake-up at most, so no client can stall the manager.
//!
//! By default only root and the daemon's own user may read it (`metrics_access = "owner"`): a
//! local client's user is the owner of its socket, which the kernel tells for that one socket
//! (sock_diag, looked up by the connection's two addresses: the work is the same however many
//! sockets the machine holds); a client whose socket is not local cannot be told apart, and is
//! refused. `metrics_access =
//! "any"` answers everyone who reaches the address.
//!
//! The figures are built at each scrape from the scoreboard, the pools and a few counters the
//! manager keeps as workers come and go, then the program's own (`daemon::metrics`, summed from
//! the shared area), in the text format (0.0.4) of the `prometheus` crate's encoder. (`prometheus-client` writes OpenMetrics, whose `HELP` lines name a counter without
//! its `_total`: promtool's checks of the text format reject them.)

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};

use prometheus::proto::{Bucket, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use super::core::Core;
use super::Manager;
use crate::scoreboard::{Outcome, Scoreboard, State, Work, LATENCY_BOUNDS};
use crate::sys::monotonic_ms;

// The control channel's limits: a scraper is a client like any other.
use crate::control::{DEADLINE_MS, MAX_CLIENTS};
const ACCEPTS_PER_WAKE: usize = 64;
/// The least time between two samples of the pools' work and queues for the metrics.
const SAMPLE_MS: u64 = 250;
const MAX_HEAD: usize = 8 * 1024;
/// Refused connections kept open at most, to read what their clients send after the 403.
const MAX_REFUSED: usize = 64;
/// How long a refused connection is kept for that.
const REFUSED_LINGER_MS: u64 = 1_000;

pub(crate) struct MetricsServer {
    listener: TcpListener,
    user: Option<u32>,
    clients: Vec<Client>,
    /// Clients who may not read the metrics: they may ask `/healthz` and `/readyz` (an
    /// orchestrator's probes come from outside), anything else gets 403. A list of their own,
    /// so they never push out a scrape.
    strangers: Vec<Client>,
    /// Answered 403 and shut for writing; read and dropped until their client closes, so the
    /// request it sends after the answer does not reset the connection before it is read
    /// (nginx's lingering close). They hold none of the clients' places.
    refused: Vec<(TcpStream, u64)>,
}

struct Client {
    stream: TcpStream,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    sent: usize,
    deadline_ms: u64,
}

/// What the probes answer: whether the serving pool is ready, or why not.
pub(crate) struct Probe {
    pub ready: Result<(), String>,
}

/// How long a stranger has to send its request (a probe sends it at once).
const STRANGER_MS: u64 = 2_000;

impl Client {
    fn new(stream: TcpStream, deadline_ms: u64) -> Client {
        Client { stream, inbox: Vec::new(), outbox: Vec::new(), sent: 0, deadline_ms }
    }

    /// Reads what came; the request's head once it is whole. `Err`: the client is gone, or
    /// sent more than a head.
    fn read_head(&mut self) -> Result<Option<String>, ()> {
        let mut buf = [0u8; 2048];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(()),
                Ok(n) => {
                    self.inbox.extend_from_slice(&buf[..n]);
                    if self.inbox.len() > MAX_HEAD {
                        return Err(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let Some(end) = self.inbox.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
        Ok(Some(String::from_utf8_lossy(&self.inbox[..end]).into_owned()))
    }

    /// Writes what it can of the answer; whether the client is done with (answered, or gone).
    fn write_out(&mut self) -> bool {
        loop {
            match self.stream.write(&self.outbox[self.sent..]) {
                Ok(0) => return true,
                Ok(n) => {
                    self.sent += n;
                    if self.sent == self.outbox.len() {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }
}

impl MetricsServer {
    /// `listener` is bound (by the start, before privileges are dropped) and non-blocking.
    /// `user`: the daemon's user (`user`), who may read the metrics besides root and this
    /// process's own user.
    pub(crate) fn new(listener: TcpListener, user: Option<u32>) -> MetricsServer {
        MetricsServer { listener, user, clients: Vec::new(), strangers: Vec::new(), refused: Vec::new() }
    }

    /// The listening socket and its address, to hand over in an upgrade.
    pub(crate) fn socket(&self) -> Option<(BorrowedFd<'_>, SocketAddr)> {
        Some((self.listener.as_fd(), self.listener.local_addr().ok()?))
    }

    /// What to poll: the listener (if this manager takes new clients), and each client (for
    /// writing once it has an answer).
    pub(crate) fn poll_fds(&self, listen: bool) -> Vec<(BorrowedFd<'_>, bool)> {
        let mut fds = if listen { vec![(self.listener.as_fd(), false)] } else { Vec::new() };
        fds.extend(self.clients.iter().chain(&self.strangers).map(|c| (c.stream.as_fd(), !c.outbox.is_empty())));
        fds.extend(self.refused.iter().map(|(s, _)| (s.as_fd(), false)));
        fds
    }

    pub(crate) fn deadline(&self) -> Option<u64> {
        self.clients.iter().chain(&self.strangers).map(|c| c.deadline_ms).chain(self.refused.iter().map(|(_, d)| *d)).min()
    }

    /// Accepts, reads, answers and closes, without blocking. `render` makes the page; `anyone`
    /// is `metrics_access = "any"`; `probe` answers `/healthz` and `/readyz`, to anyone.
    pub(crate) fn serve(&mut self, now: u64, anyone: bool, listen: bool, probe: &Probe, render: impl FnOnce() -> String) {
        for _ in 0..if listen { ACCEPTS_PER_WAKE } else { 0 } {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    // Who may read is known from the connection alone: one who may not gets a
                    // place among the strangers (a probe, or a 403), never one a scrape needs.
                    let local = stream.local_addr().ok();
                    if !anyone && !local.is_some_and(|l| owner_may_read(peer, l, self.user)) {
                        if self.strangers.len() >= MAX_REFUSED {
                            // One that has said nothing goes first: a probe says its request at once.
                            let silent = self.strangers.iter().position(|c| c.inbox.is_empty()).unwrap_or(0);
                            self.strangers.remove(silent);
                        }
                        self.strangers.push(Client::new(stream, now.saturating_add(STRANGER_MS)));
                        continue;
                    }
                    if self.clients.len() >= MAX_CLIENTS {
                        // The one that has waited longest for its own request goes.
                        let oldest = self.clients.iter().position(|c| c.outbox.is_empty()).unwrap_or(0);
                        self.clients.remove(oldest);
                    }
                    self.clients.push(Client::new(stream, now.saturating_add(DEADLINE_MS)));
                }
                Err(_) => break,
            }
        }
        self.refused.retain(|(stream, deadline)| {
            // A request's head at most: a client that sends more is not waiting for an answer.
            let mut buf = [0u8; 2048];
            for _ in 0..MAX_HEAD / buf.len() {
                match (&*stream).read(&mut buf) {
                    Ok(0) => return false,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return now < *deadline,
                    Err(_) => return false,
                }
            }
            false
        });
        let mut turned_away = Vec::new();
        self.strangers.retain_mut(|c| {
            if now >= c.deadline_ms {
                return false;
            }
            if c.outbox.is_empty() {
                match c.read_head() {
                    Err(()) => return false,
                    Ok(None) => return true,
                    Ok(Some(head)) => match probe_answer(&head, probe) {
                        Some(answer) => c.outbox = answer,
                        None => {
                            let _ = (&c.stream).write(&forbidden());
                            let _ = c.stream.shutdown(std::net::Shutdown::Write);
                            if let Ok(s) = c.stream.try_clone() {
                                turned_away.push(s);
                            }
                            return false;
                        }
                    },
                }
            }
            !c.write_out()
        });
        for stream in turned_away {
            if self.refused.len() >= MAX_REFUSED {
                self.refused.remove(0);
            }
            self.refused.push((stream, now.saturating_add(REFUSED_LINGER_MS)));
        }
        let mut page: Option<String> = None;
        let mut render = Some(render);
        self.clients.retain_mut(|c| {
            if now >= c.deadline_ms {
                return false;
            }
            if c.outbox.is_empty() {
                let head = match c.read_head() {
                    Err(()) => return false,
                    Ok(None) => return true,
                    Ok(Some(head)) => head,
                };
                c.outbox = probe_answer(&head, probe).unwrap_or_else(|| {
                    answer(&head, || {
                        if page.is_none() {
                            page = render.take().map(|r| r());
                        }
                        page.clone().unwrap_or_default()
                    })
                });
            }
            !c.write_out()
        });
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The answer to one who may not read the metrics.
fn forbidden() -> Vec<u8> {
    response("403 Forbidden", "text/plain", "only root and the daemon's user may read the metrics (metrics_access = \"owner\")\n")
}

/// `/healthz` (the manager's loop turns: it is answering) and `/readyz` (the serving pool
/// accepts), for anyone; `None` for any other request.
fn probe_answer(head: &str, probe: &Probe) -> Option<Vec<u8>> {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    if method != "GET" {
        return None;
    }
    match path {
        "/healthz" => Some(response("200 OK", "text/plain", "ok\n")),
        "/readyz" => Some(match &probe.ready {
            Ok(()) => response("200 OK", "text/plain", "ready\n"),
            Err(why) => response("503 Service Unavailable", "text/plain", &format!("not ready: {why}\n")),
        }),
        _ => None,
    }
}

/// The answer to a request head, from one who may read the metrics.
fn answer(head: &str, page: impl FnOnce() -> String) -> Vec<u8> {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => response("200 OK", prometheus::TEXT_FORMAT, &page()),
        ("GET", _) => response("404 Not Found", "text/plain", "the metrics are at /metrics, the probes at /healthz and /readyz\n"),
        _ => response("405 Method Not Allowed", "text/plain", "only GET\n"),
    }
}

/// Whether the client at `peer`, connected to `local`, runs as root, as this process's user or as
/// the daemon's `user`: the kernel's record of its socket's owner. A client the kernel does not
/// know (not on this machine) is not allowed.
fn owner_may_read(peer: SocketAddr, local: SocketAddr, user: Option<u32>) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    match crate::sys::sock_diag::tcp_owner(peer, local) {
        Ok(owner) => owner.is_some_and(|uid| uid == 0 || uid == me || Some(uid) == user),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "metrics: cannot tell who owns the client's socket; refused");
            false
        }
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Empty | State::Forking | State::Forked | State::Starting => "starting",
        State::Waiting => "idle",
        State::Request => "busy",
        State::Long => "long",
        State::Exiting => "exiting",
    }
}

const STATES: [&str; 5] = ["starting", "idle", "busy", "long", "exiting"];

impl Manager {
    /// Serves the metrics clients that are ready.
    pub(super) fn serve_metrics(&mut self) {
        let Some(mut server) = self.own.as_mut().and_then(|o| o.metrics.take()) else { return };
        // The pools' work and the listen queues as of this scrape (at most four times a second:
        // a flood of connections wakes the manager for each, and a scrape needs no fresher).
        let now = monotonic_ms();
        if self.metrics_sampled.map_or(true, |at| now >= at.saturating_add(SAMPLE_MS)) {
            self.metrics_sampled = Some(now);
            self.core.sample_work(now, &self.board, true);
            let queues = self.measure_queues();
            self.handle(super::core::Event::Queues(queues));
        }
        let (core, board) = (&self.core, &self.board);
        let probe = Probe { ready: core.readiness(board) };
        // An upgrade's other manager takes the new clients; those this one has are answered.
        server.serve(monotonic_ms(), core.config().metrics_for_anyone, core.answers_metrics(), &probe, || render(core, board));
        if let Some(own) = self.own.as_mut() {
            own.metrics = Some(server);
        }
    }
}

/// The metrics page, as of now.
fn render(core: &Core, board: &Scoreboard) -> String {
    try_render(core, board).unwrap_or_else(|e| format!("# the metrics could not be encoded: {e}\n"))
}

fn try_render(core: &Core, board: &Scoreboard) -> prometheus::Result<String> {
    let gauges = |name: &str, help: &str, labels: &[&str]| IntGaugeVec::new(Opts::new(name, help), labels);
    let counters = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
    let workers = gauges("workers", "Workers by pool and state (starting, idle, busy, long, exiting)", &["pool", "state"])?;
    let target = gauges("pool_workers_target", "The workers a pool keeps (its floor)", &["pool"])?;
    let generation = gauges("pool_generation", "A pool's generation: one more each reload that replaced its workers", &["pool"])?;
    let crash_loop = gauges("pool_crash_loop", "1 while the pool is in a crash loop (forks slowed to one each 10 s)", &["pool"])?;
    let connections = counters("connections_total", "Connections accepted and served, by pool (requests: daemon_http_requests_total)", &["pool"])?;
    let exits = counters(
        "worker_exits_total",
        "Worker exits by pool and cause: recycled, returned, served (post-forked), retired, stopped, \
         hung (no heartbeat), deadline, not_ready, memory, cpu, crashed (before ready or within \
         min_worker_lifetime), failed (a non-zero exit or a signal the manager did not send, later)",
        &["pool", "cause"],
    )?;
    let spawned = counters("workers_spawned_total", "Workers forked, by pool", &["pool"])?;
    let upgrades = counters("upgrades_total", "Hot upgrades this manager started, by outcome", &["outcome"])?;
    let rss = gauges("worker_rss_bytes", "Resident memory of each worker, as it measured it (with max_rss)", &["pool", "slot"])?;
    let busy = prometheus::CounterVec::new(
        Opts::new("pool_busy_seconds_total", "Seconds the pool's workers were busy (a connection or job in hand), summed over workers: rate() is the average number of busy workers"),
        &["pool"],
    )?;
    let requests = counters(
        "requests_total",
        "Requests by pool and outcome: ok, error (an error returned, a panic, a client gone, an HTTP 5xx), timeout (cut by request_timeout)",
        &["pool", "outcome"],
    )?;
    let queue_waiting = gauges("listen_queue_waiting", "Connections waiting in a listener's accept queue for a worker to take them", &["listener"])?;
    let queue_limit = gauges("listen_queue_limit", "The length of a listener's accept queue (backlog, capped by net.core.somaxconn)", &["listener"])?;
    let overflows = counters(
        "listen_overflows_total",
        "Handshakes the kernel dropped at a TCP listener because its accept queue was full (a client's retries count again; per socket, where the machine's total is ListenOverflows)",
        &["listener"],
    )?;
    for q in &core.queues.samples {
        queue_waiting.with_label_values(&[q.listener.as_str()]).set(i64::from(q.waiting));
        queue_limit.with_label_values(&[q.listener.as_str()]).set(i64::from(q.limit));
        if let Some(n) = q.overflows {
            overflows.with_label_values(&[q.listener.as_str()]).inc_by(n);
        }
    }
    let wakes = IntCounter::new("manager_wakes_total", "Times workers woke the manager")?;
    let backed_out = IntGauge::new("backed_out", "1 while the manager is backed out (no workers, sockets kept)")?;
    for pool in core.pools.values() {
        let name = pool.name.as_str();
        for state in STATES {
            workers.with_label_values(&[name, state]).set(0);
        }
        target.with_label_values(&[name]).set(i64::from(pool.limits.workers));
        generation.with_label_values(&[name]).set(i64::from(pool.generation));
        crash_loop.with_label_values(&[name]).set(i64::from(pool.restarts.in_crash_loop()));
        connections.with_label_values(&[name]).inc_by(core.counters.served.get(name).copied().unwrap_or(0));
        spawned.with_label_values(&[name]).inc_by(core.counters.spawned.get(name).copied().unwrap_or(0));
    }
    for p in core.procs.iter().filter(|p| p.pid.is_some()) {
        let Some(pool) = core.pools.get(&p.pool) else { continue };
        let v = board.view(p.slot);
        let state = if p.stopping.is_some() { "exiting" } else { state_name(v.state) };
        workers.with_label_values(&[pool.name.as_str(), state]).inc();
        connections.with_label_values(&[pool.name.as_str()]).inc_by(v.requests);
        if pool.supervision.max_rss.is_some() {
            let slot = p.slot.to_string();
            rss.with_label_values(&[pool.name.as_str(), slot.as_str()]).set(i64::try_from(v.rss).unwrap_or(i64::MAX));
        }
    }
    for (pool, w) in &core.counters.seen_work {
        busy.with_label_values(&[pool.as_str()]).inc_by(w.busy_ns as f64 / 1e9);
        for (outcome, name) in Outcome::ALL {
            requests.with_label_values(&[pool.as_str(), name]).inc_by(w.outcomes[outcome as usize]);
        }
    }
    for ((pool, cause), n) in &core.counters.exits {
        exits.with_label_values(&[pool.as_str(), cause]).inc_by(*n);
    }
    for outcome in ["took_over", "rolled_back", "backed_out"] {
        upgrades.with_label_values(&[outcome]).inc_by(core.counters.upgrades.get(outcome).copied().unwrap_or(0));
    }
    wakes.inc_by(board.wakes());
    backed_out.set(i64::from(core.backed_out));
    let registry = Registry::new_custom(Some("daemon".to_string()), None)?;
    for family in [workers, target, generation, crash_loop] {
        registry.register(Box::new(family))?;
    }
    for family in [connections, exits, spawned, upgrades] {
        registry.register(Box::new(family))?;
    }
    if !core.queues.samples.is_empty() {
        registry.register(Box::new(queue_waiting))?;
        registry.register(Box::new(queue_limit))?;
    }
    if core.queues.samples.iter().any(|q| q.overflows.is_some()) {
        registry.register(Box::new(overflows))?;
    }
    registry.register(Box::new(busy))?;
    registry.register(Box::new(requests))?;
    registry.register(Box::new(wakes))?;
    registry.register(Box::new(backed_out))?;
    if core.pools.values().any(|p| p.supervision.max_rss.is_some()) {
        registry.register(Box::new(rss))?;
    }
    let mut families = registry.gather();
    families.push(durations(&core.counters.seen_work));
    families.sort_by(|a, b| a.name().cmp(b.name()));
    families.extend(program_families(crate::metrics::area::gather()));
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `daemon_request_duration_seconds`: each pool's requests by duration, from the buckets its
/// workers count in their slots.
fn durations(work: &std::collections::BTreeMap<String, Work>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name("daemon_request_duration_seconds".to_string());
    family.set_help("How long requests took, by pool: an HTTP request or stream, a raw handler's request (between two reads of read_or_stop, or its connection), a classic connection, a task's job".to_string());
    family.set_field_type(MetricType::HISTOGRAM);
    for (pool, w) in work {
        let mut metric = Metric::default();
        metric.set_label(vec![label("pool", pool)]);
        metric.set_histogram(histogram(&LATENCY_BOUNDS, &w.buckets, w.sum_us as f64 / 1e6, w.buckets.iter().sum()));
        family.mut_metric().push(metric);
    }
    family
}

/// A label of a series.
fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_string());
    pair.set_value(value.to_string());
    pair
}

/// A histogram from its bounds and each bucket's own count (made cumulative here).
fn histogram(bounds: &[f64], counts: &[u64], sum: f64, count: u64) -> prometheus::proto::Histogram {
    let mut cumulative = 0u64;
    let buckets = bounds
        .iter()
        .zip(counts)
        .map(|(bound, n)| {
            cumulative = cumulative.wrapping_add(*n);
            let mut b = Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = prometheus::proto::Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_sum(sum);
    h.set_sample_count(count);
    h
}

/// The program's own metrics (`daemon::metrics`), as the encoder takes them: one family per
/// name (the samples come sorted by name), one series per set of labels.
fn program_families(samples: Vec<crate::metrics::area::Sample>) -> Vec<MetricFamily> {
    use crate::metrics::area::Kind;
    let mut families: Vec<MetricFamily> = Vec::new();
    let mut last: Option<(String, Kind)> = None;
    for s in samples {
        let d = &s.def;
        let same = last.as_ref().is_some_and(|(name, _)| *name == d.name);
        if same && last.as_ref().is_some_and(|(_, kind)| *kind != d.kind) {
            continue; // one name, one kind: the first description found stays
        }
        if !same {
            let mut family = MetricFamily::default();
            family.set_name(d.name.clone());
            family.set_help(d.help.clone());
            family.set_field_type(match d.kind {
                Kind::Counter => MetricType::COUNTER,
                Kind::Gauge => MetricType::GAUGE,
                Kind::Histogram => MetricType::HISTOGRAM,
            });
            families.push(family);
            last = Some((d.name.clone(), d.kind));
        }
        let mut metric = Metric::default();
        metric.set_label(crate::metrics::parse_labels(&d.labels).into_iter().map(|(k, v)| label(&k, &v)).collect());
        let first = s.values.first().copied().unwrap_or(0);
        match d.kind {
            Kind::Counter => {
                let mut c = prometheus::proto::Counter::default();
                c.set_value(first as f64);
                metric.set_counter(c);
            }
            Kind::Gauge => {
                let mut g = prometheus::proto::Gauge::default();
                g.set_value(first as i64 as f64);
                metric.set_gauge(g);
            }
            Kind::Histogram => {
                let count = s.values.get(d.bounds.len() + 2).copied().unwrap_or(0);
                metric.set_histogram(histogram(&d.bounds, &s.values, s.histogram_sum(), count));
            }
        }
        if let Some(family) = families.last_mut() {
            family.mut_metric().push(metric);
        }
    }
    families
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stranger_is_refused_and_an_owner_gets_the_page() {
        let refused = String::from_utf8(forbidden()).unwrap();
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
        let ok = String::from_utf8(answer("GET /metrics?x=1 HTTP/1.1", || "daemon_x 1\n".into())).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("daemon_x 1\n"), "{ok}");
        let other = String::from_utf8(answer("GET / HTTP/1.1", || unreachable!())).unwrap();
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    }
}
