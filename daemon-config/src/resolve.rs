//! From the values people gave (in any source) to one checked configuration: every value on its
//! own, then the defaults that depend on others, then the relations between settings.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::problem::{Origin, Problem};
use crate::settings::{setting, Key, Value, AUTO, MAX_WORKERS};

/// The values given so far, each with its origin. Setting a key again replaces it, so sources are
/// layered by setting them from the lowest precedence to the highest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given {
    entries: BTreeMap<Key, (Value, Origin)>,
    /// Flags set on within one source, to find conflicts within that source.
    clashes: Vec<(Key, Key, Origin)>,
    /// The CPUs this process may use, and how that was found: what `prefork = auto` means. Set
    /// at run time; unknown while the program compiles.
    cpus: Option<(u64, String)>,
}

impl Given {
    pub fn new() -> Given {
        Given::default()
    }

    /// Gives `key` a value from `origin`, replacing any value from a lower source.
    pub fn set(&mut self, key: Key, value: Value, origin: Origin) {
        if value == Value::Flag(true) {
            let rival = match key {
                Key::Detach => Some(Key::Foreground),
                Key::Foreground => Some(Key::Detach),
                _ => None,
            };
            if let Some(rival) = rival {
                if self.entries.get(&rival) == Some(&(Value::Flag(true), origin.clone())) {
                    self.clashes.push((rival, key, origin.clone()));
                }
            }
        }
        self.entries.insert(key, (value, origin));
    }

    /// What `auto` counts to: `count` CPUs, found so (`why`, for people).
    pub fn set_cpus(&mut self, count: u64, why: String) {
        self.cpus = Some((count.max(1), why));
    }

    pub fn get(&self, key: Key) -> Option<&(Value, Origin)> {
        self.entries.get(&key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Key, &Value, &Origin)> {
        self.entries.iter().map(|(k, (v, o))| (*k, v, o))
    }
}

/// How the program's `on_accept` handler serves connections, which sets what `clients` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// `async fn(Connection)`: many connections per worker.
    Async,
    /// `fn(TcpStream)`: one connection per worker at a time.
    Sync,
    /// Not known yet (at compile time, `#[daemon::main]` cannot see the handler).
    Unknown,
}

/// The checked configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub workers: u32,
    /// `prefork = auto`: how the number of workers was found (the CPUs, and why so many).
    pub workers_auto: Option<String>,
    /// The CPUs this process may use, when counted (at run time): what `auto` means, and how
    /// many async workers accept at once.
    pub cpus: Option<u32>,
    pub min_spare: u32,
    pub max_spare: u32,
    pub max_children: u32,
    pub requests: u64,
    pub clients: u32,
    pub listen: Vec<String>,
    /// Each listener's accept queue (`listen(2)`'s backlog), before the kernel's cap.
    pub backlog: u32,
    /// TCP_NODELAY on accepted connections.
    pub tcp_nodelay: bool,
    /// The listeners' SO_RCVBUF and SO_SNDBUF in bytes, and TCP_DEFER_ACCEPT; None: the kernel's.
    pub rcvbuf: Option<u64>,
    pub sndbuf: Option<u64>,
    pub tcp_defer_accept: Option<Duration>,
    /// Unix socket files: their permission bits, owner and group (names, looked up at start).
    pub socket_mode: u32,
    pub socket_user: Option<String>,
    pub socket_group: Option<String>,
    /// TLS on the TCP listeners: the certificate chain, its key, and the CAs clients' certificates
    /// must chain to (PEM files).
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_client_ca: Option<String>,
    /// The protocols a handshake may agree on (`tls_alpn`), in order; none for `none`.
    pub tls_alpn: Vec<String>,
    pub detach: bool,
    pub foreground: bool,
    pub graceful_timeout: Duration,
    /// `term_stop = "graceful"`: TERM stops gracefully, as QUIT.
    pub term_graceful: bool,
    pub start_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// `None`: off.
    pub heartbeat_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub long_request_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
    /// Bytes.
    pub max_rss: Option<u64>,
    pub max_cpu: Option<Duration>,
    pub restart_intensity: u32,
    pub restart_period: Duration,
    pub min_worker_lifetime: Duration,
    /// The manager accepts, and forks a child per connection.
    pub postfork: bool,
    pub respawn_delay: Duration,
    pub drain_timeout: Duration,
    pub upgrade_timeout: Duration,
    /// `json`: one JSON object a line.
    pub log_json: bool,
    /// Where `GET /metrics` is answered, if anywhere.
    pub metrics_listen: Option<String>,
    /// Any client may read the metrics, not only root's and the daemon's user's.
    pub metrics_for_anyone: bool,
    pub pid_file: Option<String>,
    pub log_file: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    origins: BTreeMap<Key, Origin>,
}

impl Config {
    /// Where the effective value of `key` came from.
    pub fn origin(&self, key: Key) -> Origin {
        self.origins.get(&key).cloned().unwrap_or(Origin::Default)
    }

    /// The effective value of `key`.
    pub fn value(&self, key: Key) -> Value {
        match key {
            Key::Prefork => Value::Count(self.workers.into()),
            Key::MinSpare => Value::Count(self.min_spare.into()),
            Key::MaxSpare => Value::Count(self.max_spare.into()),
            Key::MaxChildren => Value::Count(self.max_children.into()),
            Key::Requests => Value::Count(self.requests),
            Key::Clients => Value::Count(self.clients.into()),
            Key::Listen => Value::Addresses(self.listen.clone()),
            Key::Backlog => Value::Count(self.backlog.into()),
            Key::TcpNodelay => Value::Flag(self.tcp_nodelay),
            Key::Rcvbuf => Value::Size(self.rcvbuf.unwrap_or(0)),
            Key::Sndbuf => Value::Size(self.sndbuf.unwrap_or(0)),
            Key::TcpDeferAccept => Value::Duration(self.tcp_defer_accept.unwrap_or(Duration::ZERO)),
            Key::SocketMode => Value::Text(format!("{:04o}", self.socket_mode)),
            Key::SocketUser => Value::Text(self.socket_user.clone().unwrap_or_default()),
            Key::SocketGroup => Value::Text(self.socket_group.clone().unwrap_or_default()),
            Key::TlsCert => Value::Text(self.tls_cert.clone().unwrap_or_default()),
            Key::TlsKey => Value::Text(self.tls_key.clone().unwrap_or_default()),
            Key::TlsClientCa => Value::Text(self.tls_client_ca.clone().unwrap_or_default()),
            Key::TlsAlpn => Value::Text(if self.tls_alpn.is_empty() { "none".to_string() } else { self.tls_alpn.join(",") }),
            Key::Detach => Value::Flag(self.detach),
            Key::Foreground => Value::Flag(self.foreground),
            Key::GracefulTimeout => Value::Duration(self.graceful_timeout),
            Key::TermStop => Value::Text(if self.term_graceful { "graceful" } else { "fast" }.to_string()),
            Key::StartTimeout => Value::Duration(self.start_timeout),
            Key::HeartbeatInterval => Value::Duration(self.heartbeat_interval),
            Key::HeartbeatTimeout => off(self.heartbeat_timeout),
            Key::RequestTimeout => off(self.request_timeout),
            Key::LongRequestTimeout => off(self.long_request_timeout),
            Key::IdleTimeout => off(self.idle_timeout),
            Key::KeepaliveTimeout => off(self.keepalive_timeout),
            Key::MaxRss => Value::Size(self.max_rss.unwrap_or(0)),
            Key::MaxCpu => off(self.max_cpu),
            Key::RestartIntensity => Value::Count(self.restart_intensity.into()),
            Key::RestartPeriod => Value::Duration(self.restart_period),
            Key::MinWorkerLifetime => Value::Duration(self.min_worker_lifetime),
            Key::Postfork => Value::Flag(self.postfork),
            Key::RespawnDelay => Value::Duration(self.respawn_delay),
            Key::DrainTimeout => Value::Duration(self.drain_timeout),
            Key::UpgradeTimeout => Value::Duration(self.upgrade_timeout),
            Key::LogFormat => Value::Text(if self.log_json { "json" } else { "text" }.to_string()),
            Key::MetricsListen => Value::Text(self.metrics_listen.clone().unwrap_or_default()),
            Key::MetricsAccess => Value::Text(if self.metrics_for_anyone { "any" } else { "owner" }.to_string()),
            Key::PidFile => Value::Text(self.pid_file.clone().unwrap_or_default()),
            Key::LogFile => Value::Text(self.log_file.clone().unwrap_or_default()),
            Key::User => Value::Text(self.user.clone().unwrap_or_default()),
            Key::Group => Value::Text(self.group.clone().unwrap_or_default()),
        }
    }

    /// Whether the process should detach: `detach`, unless `foreground` overrides it.
    pub fn detaches(&self) -> bool {
        self.detach && !self.foreground
    }

    /// The value of a setting whose kind is a path, to read or replace; `None` for other keys.
    pub fn path_mut(&mut self, key: Key) -> Option<&mut Option<String>> {
        match key {
            Key::PidFile => Some(&mut self.pid_file),
            Key::LogFile => Some(&mut self.log_file),
            Key::TlsCert => Some(&mut self.tls_cert),
            Key::TlsKey => Some(&mut self.tls_key),
            Key::TlsClientCa => Some(&mut self.tls_client_ca),
            Key::TlsAlpn
            | Key::Prefork
            | Key::MinSpare
            | Key::MaxSpare
            | Key::MaxChildren
            | Key::Requests
            | Key::Clients
            | Key::Listen
            | Key::Backlog
            | Key::TcpNodelay
            | Key::Rcvbuf
            | Key::Sndbuf
            | Key::TcpDeferAccept
            | Key::SocketMode
            | Key::SocketUser
            | Key::SocketGroup
            | Key::Detach
            | Key::Foreground
            | Key::GracefulTimeout
            | Key::TermStop
            | Key::StartTimeout
            | Key::HeartbeatInterval
            | Key::HeartbeatTimeout
            | Key::RequestTimeout
            | Key::LongRequestTimeout
            | Key::IdleTimeout
            | Key::KeepaliveTimeout
            | Key::MaxRss
            | Key::MaxCpu
            | Key::RestartIntensity
            | Key::RestartPeriod
            | Key::MinWorkerLifetime
            | Key::Postfork
            | Key::RespawnDelay
            | Key::DrainTimeout
            | Key::UpgradeTimeout
            | Key::LogFormat
            | Key::MetricsListen
            | Key::MetricsAccess
            | Key::User
            | Key::Group => None,
        }
    }

    /// Takes `key`'s value (and its origin) from `other`.
    fn take(&mut self, key: Key, other: &Config) {
        match key {
            Key::Prefork => {
                self.workers = other.workers;
                self.workers_auto.clone_from(&other.workers_auto);
            }
            Key::MinSpare => self.min_spare = other.min_spare,
            Key::MaxSpare => self.max_spare = other.max_spare,
            Key::MaxChildren => self.max_children = other.max_children,
            Key::Requests => self.requests = other.requests,
            Key::Clients => self.clients = other.clients,
            Key::Listen => self.listen.clone_from(&other.listen),
            Key::Backlog => self.backlog = other.backlog,
            Key::TcpNodelay => self.tcp_nodelay = other.tcp_nodelay,
            Key::Rcvbuf => self.rcvbuf = other.rcvbuf,
            Key::Sndbuf => self.sndbuf = other.sndbuf,
            Key::TcpDeferAccept => self.tcp_defer_accept = other.tcp_defer_accept,
            Key::SocketMode => self.socket_mode = other.socket_mode,
            Key::SocketUser => self.socket_user.clone_from(&other.socket_user),
            Key::SocketGroup => self.socket_group.clone_from(&other.socket_group),
            Key::TlsCert => self.tls_cert.clone_from(&other.tls_cert),
            Key::TlsKey => self.tls_key.clone_from(&other.tls_key),
            Key::TlsClientCa => self.tls_client_ca.clone_from(&other.tls_client_ca),
            Key::TlsAlpn => self.tls_alpn.clone_from(&other.tls_alpn),
            Key::Detach => self.detach = other.detach,
            Key::Foreground => self.foreground = other.foreground,
            Key::GracefulTimeout => self.graceful_timeout = other.graceful_timeout,
            Key::TermStop => self.term_graceful = other.term_graceful,
            Key::StartTimeout => self.start_timeout = other.start_timeout,
            Key::HeartbeatInterval => self.heartbeat_interval = other.heartbeat_interval,
            Key::HeartbeatTimeout => self.heartbeat_timeout = other.heartbeat_timeout,
            Key::RequestTimeout => self.request_timeout = other.request_timeout,
            Key::LongRequestTimeout => self.long_request_timeout = other.long_request_timeout,
            Key::IdleTimeout => self.idle_timeout = other.idle_timeout,
            Key::KeepaliveTimeout => self.keepalive_timeout = other.keepalive_timeout,
            Key::MaxRss => self.max_rss = other.max_rss,
            Key::MaxCpu => self.max_cpu = other.max_cpu,
            Key::RestartIntensity => self.restart_intensity = other.restart_intensity,
            Key::RestartPeriod => self.restart_period = other.restart_period,
            Key::MinWorkerLifetime => self.min_worker_lifetime = other.min_worker_lifetime,
            Key::Postfork => self.postfork = other.postfork,
            Key::RespawnDelay => self.respawn_delay = other.respawn_delay,
            Key::DrainTimeout => self.drain_timeout = other.drain_timeout,
            Key::UpgradeTimeout => self.upgrade_timeout = other.upgrade_timeout,
            Key::LogFormat => self.log_json = other.log_json,
            Key::MetricsListen => self.metrics_listen.clone_from(&other.metrics_listen),
            Key::MetricsAccess => self.metrics_for_anyone = other.metrics_for_anyone,
            Key::PidFile => self.pid_file.clone_from(&other.pid_file),
            Key::LogFile => self.log_file.clone_from(&other.log_file),
            Key::User => self.user.clone_from(&other.user),
            Key::Group => self.group.clone_from(&other.group),
        }
        self.origins.insert(key, other.origin(key));
    }

    /// On reload: keeps `running`'s value of every setting the rule book marks "needs a
    /// restart", so that none of them moves half way (in some processes and not others).
    /// Returns those whose value in `self` differed, with the value that was not applied.
    pub fn keep_restart_settings(&mut self, running: &Config) -> Vec<(Key, Value)> {
        let mut kept = Vec::new();
        for s in crate::SETTINGS
            .iter()
            .filter(|s| s.reload == crate::Reload::NeedsRestart)
        {
            let wanted = self.value(s.key);
            if wanted != running.value(s.key) {
                kept.push((s.key, wanted));
            }
            self.take(s.key, running);
        }
        kept
    }
}

/// An optional limit as the rule book writes it: 0 is off.
fn off(limit: Option<Duration>) -> Value {
    Value::Duration(limit.unwrap_or(Duration::ZERO))
}

fn count(value: &Value) -> Option<u64> {
    match value {
        Value::Count(n) => Some(*n),
        _ => None,
    }
}

fn as_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Checks every given value, fills in the defaults and checks the relations. Returns every
/// problem found, not just the first.
pub fn resolve(given: &Given, model: Model) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    // Values that break their own rule take no part in the relations below.
    let mut ok: BTreeMap<Key, (Value, Origin)> = BTreeMap::new();
    for (key, value, origin) in given.iter() {
        match setting(key).check(value) {
            Ok(()) => {
                ok.insert(key, (value.clone(), origin.clone()));
            }
            Err(message) => problems.push(Problem::new(
                vec![(key, origin.clone(), value.clone())],
                message,
            )),
        }
    }
    for (first, second, origin) in &given.clashes {
        problems.push(Problem::new(
            vec![
                (*second, origin.clone(), Value::Flag(true)),
                (*first, origin.clone(), Value::Flag(true)),
            ],
            "detach and foreground contradict each other: keep one of them".to_string(),
        ));
    }

    let explicit = |key: Key| ok.get(&key).and_then(|(v, _)| count(v));
    let mut origins: BTreeMap<Key, Origin> = ok.iter().map(|(k, (_, o))| (*k, o.clone())).collect();

    // Defaults, each chosen so that the defaults alone, or with any one key set, are valid.
    // `auto`, as the default, is bounded by max_children: it is a wish, not a number given.
    let auto = matches!(ok.get(&Key::Prefork), Some((Value::Text(t), _)) if t == AUTO);
    let auto_count = given.cpus.as_ref().map_or(1, |(n, _)| *n).clamp(1, MAX_WORKERS);
    let workers = explicit(Key::Prefork).unwrap_or_else(|| {
        let wish = if auto { auto_count } else { 4 };
        explicit(Key::MaxChildren).map_or(wish, |m| m.min(wish))
    });
    let workers_auto = auto.then(|| {
        let why = given.cpus.as_ref().map_or("the CPUs are counted at run time", |(_, w)| w.as_str());
        if workers < auto_count {
            format!("{why}; at most max_children ({workers})")
        } else {
            why.to_string()
        }
    });
    let min_spare = explicit(Key::MinSpare).unwrap_or(1);
    let max_spare = explicit(Key::MaxSpare).unwrap_or_else(|| workers.max(min_spare).max(1));
    let max_children =
        explicit(Key::MaxChildren).unwrap_or_else(|| (workers + max_spare).min(MAX_WORKERS));
    let clients_given = explicit(Key::Clients);

    let subject = |key: Key, n: u64| -> (Key, Origin, Value) {
        let origin = origins_of(&ok, key);
        (key, origin, Value::Count(n))
    };

    if min_spare > max_spare {
        problems.push(Problem::new(
            vec![
                subject(Key::MinSpare, min_spare),
                subject(Key::MaxSpare, max_spare),
            ],
            format!(
                "min_spare ({min_spare}) is greater than max_spare ({max_spare}), so the manager \
                 would fork a spare and retire it again forever; make min_spare at most max_spare"
            ),
        ));
    }
    if workers > max_children {
        problems.push(Problem::new(
            vec![
                subject(Key::Prefork, workers),
                subject(Key::MaxChildren, max_children),
            ],
            format!(
                "prefork ({workers}) is greater than max_children ({max_children}), so the pool \
                 could never reach its size; make prefork at most max_children"
            ),
        ));
    }
    if matches!(ok.get(&Key::Postfork), Some((Value::Flag(true), _))) {
        for key in [Key::Prefork, Key::MinSpare, Key::MaxSpare, Key::Requests] {
            if let Some((value, origin)) = ok.get(&key) {
                problems.push(Problem::new(
                    vec![
                        (key, origin.clone(), value.clone()),
                        (
                            Key::Postfork,
                            origins_of(&ok, Key::Postfork),
                            Value::Flag(true),
                        ),
                    ],
                    format!(
                        "{} is a setting of the pre-forking pool, and postfork forks one child per \
                         connection instead: remove {}, or postfork (max_children bounds the \
                         children of both)",
                        setting(key).name,
                        setting(key).name
                    ),
                ));
            }
        }
    }
    if model == Model::Sync {
        if let Some(n) = clients_given.filter(|n| *n != 1) {
            problems.push(Problem::new(
                vec![subject(Key::Clients, n)],
                format!(
                    "clients = {n} but the on_accept handler is a plain fn, which serves one \
                     connection at a time; remove clients, or make the handler \
                     `async fn(daemon::Connection) -> std::io::Result<()>`"
                ),
            ));
        }
    }

    let clients = match model {
        Model::Sync => 1,
        Model::Async | Model::Unknown => clients_given.unwrap_or(1000),
    };
    let flag = |key: Key| matches!(ok.get(&key), Some((Value::Flag(true), _)));
    let listen = match ok.get(&Key::Listen) {
        Some((Value::Addresses(list), _)) => list.clone(),
        _ => vec!["127.0.0.1:8080".to_string()],
    };
    let duration = |key: Key, default: Duration| match ok.get(&key) {
        Some((Value::Duration(d), _)) => *d,
        _ => default,
    };
    let graceful_timeout = duration(Key::GracefulTimeout, Duration::from_secs(30));
    let start_timeout = duration(Key::StartTimeout, Duration::from_secs(60));
    // A limit that may be off: zero, from any source, is off.
    let limit = |key: Key, default: Option<Duration>| match ok.get(&key) {
        Some((Value::Duration(d), _)) => Some(*d).filter(|d| !d.is_zero()),
        _ => default,
    };
    let heartbeat_interval = duration(Key::HeartbeatInterval, Duration::from_secs(5));
    let heartbeat_timeout = limit(Key::HeartbeatTimeout, Some(Duration::from_secs(30)));
    let request_timeout = limit(Key::RequestTimeout, None);
    let long_request_timeout = limit(Key::LongRequestTimeout, None);
    let idle_timeout = limit(Key::IdleTimeout, Some(Duration::from_secs(60)));
    let keepalive_timeout = limit(Key::KeepaliveTimeout, Some(Duration::from_secs(15)));
    let max_cpu = limit(Key::MaxCpu, None);
    let max_rss = match ok.get(&Key::MaxRss) {
        Some((Value::Size(n), _)) => Some(*n).filter(|n| *n > 0),
        _ => None,
    };
    let restart_period = duration(Key::RestartPeriod, Duration::from_secs(10));
    let min_worker_lifetime = duration(Key::MinWorkerLifetime, Duration::from_secs(1));
    let restart_intensity = explicit(Key::RestartIntensity).unwrap_or(5);
    let at = |key: Key, d: Duration| -> (Key, Origin, Value) {
        (key, origins_of(&ok, key), Value::Duration(d))
    };
    if let Some(timeout) = heartbeat_timeout.filter(|t| heartbeat_interval >= *t) {
        problems.push(Problem::new(
            vec![at(Key::HeartbeatInterval, heartbeat_interval), at(Key::HeartbeatTimeout, timeout)],
            format!(
                "heartbeat_interval ({}) is not shorter than heartbeat_timeout ({}), so every worker \
                 would be found silent between two heartbeats; make heartbeat_timeout several \
                 intervals long (the defaults are 5s and 30s)",
                crate::format_duration(heartbeat_interval),
                crate::format_duration(timeout)
            ),
        ));
    }
    // TLS needs its certificate and its key; a client CA asks for TLS.
    let given_text = |key: Key| match ok.get(&key) {
        Some((v @ Value::Text(t), origin)) if !t.is_empty() => Some((key, origin.clone(), v.clone())),
        _ => None,
    };
    match (given_text(Key::TlsCert), given_text(Key::TlsKey), given_text(Key::TlsClientCa)) {
        (Some(cert), None, _) => problems.push(Problem::new(vec![cert], "tls_cert is set without tls_key: give the certificate's private key too (tls_key = \"/path/privkey.pem\")".to_string())),
        (None, Some(key), _) => problems.push(Problem::new(vec![key], "tls_key is set without tls_cert: give the certificate (and its chain) too (tls_cert = \"/path/fullchain.pem\")".to_string())),
        (None, None, Some(ca)) => problems.push(Problem::new(vec![ca], "tls_client_ca asks clients for certificates, which needs TLS: set tls_cert and tls_key too".to_string())),
        _ => {}
    }
    if let (Some(request), Some(long)) = (request_timeout, long_request_timeout) {
        if long < request {
            problems.push(Problem::new(
                vec![
                    at(Key::LongRequestTimeout, long),
                    at(Key::RequestTimeout, request),
                ],
                format!(
                    "long_request_timeout ({}) is shorter than request_timeout ({}), so marking a \
                     request long would cut it sooner; make long_request_timeout at least \
                     request_timeout",
                    crate::format_duration(long),
                    crate::format_duration(request)
                ),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let text = |key: Key| match ok.get(&key) {
        Some((Value::Text(t), _)) => Some(t.clone()),
        _ => None,
    };
    for key in [
        Key::Prefork,
        Key::MaxSpare,
        Key::MaxChildren,
        Key::MinSpare,
        Key::Clients,
    ] {
        origins.entry(key).or_insert(Origin::Default);
    }
    Ok(Config {
        workers: as_u32(workers),
        workers_auto,
        cpus: given.cpus.as_ref().map(|(n, _)| as_u32(*n)),
        min_spare: as_u32(min_spare),
        max_spare: as_u32(max_spare),
        max_children: as_u32(max_children),
        requests: explicit(Key::Requests).unwrap_or(0),
        backlog: explicit(Key::Backlog).map_or(1024, as_u32),
        // On unless said otherwise (nginx's and unicorn's default).
        tcp_nodelay: !matches!(ok.get(&Key::TcpNodelay), Some((Value::Flag(false), _))),
        rcvbuf: match ok.get(&Key::Rcvbuf) {
            Some((Value::Size(n), _)) => Some(*n).filter(|n| *n > 0),
            _ => None,
        },
        sndbuf: match ok.get(&Key::Sndbuf) {
            Some((Value::Size(n), _)) => Some(*n).filter(|n| *n > 0),
            _ => None,
        },
        tcp_defer_accept: limit(Key::TcpDeferAccept, None),
        // Checked with the value: a mode that does not parse never gets here.
        socket_mode: text(Key::SocketMode).and_then(|m| crate::settings::parse_mode(&m).ok()).unwrap_or(0o660),
        socket_user: text(Key::SocketUser),
        socket_group: text(Key::SocketGroup),
        tls_cert: text(Key::TlsCert),
        tls_key: text(Key::TlsKey),
        tls_client_ca: text(Key::TlsClientCa),
        tls_alpn: match text(Key::TlsAlpn).as_deref() {
            Some("none") => Vec::new(),
            Some(list) => list.split(',').map(str::to_string).collect(),
            None => vec!["http/1.1".to_string()],
        },
        clients: as_u32(clients),
        listen,
        detach: flag(Key::Detach),
        foreground: flag(Key::Foreground),
        graceful_timeout,
        term_graceful: text(Key::TermStop).as_deref() == Some("graceful"),
        start_timeout,
        heartbeat_interval,
        heartbeat_timeout,
        request_timeout,
        long_request_timeout,
        idle_timeout,
        keepalive_timeout,
        max_rss,
        max_cpu,
        restart_intensity: as_u32(restart_intensity),
        restart_period,
        min_worker_lifetime,
        postfork: flag(Key::Postfork),
        respawn_delay: duration(Key::RespawnDelay, Duration::from_secs(5)),
        drain_timeout: duration(Key::DrainTimeout, Duration::from_secs(1)),
        upgrade_timeout: duration(Key::UpgradeTimeout, Duration::from_secs(60)),
        log_json: text(Key::LogFormat).as_deref() == Some("json"),
        metrics_listen: text(Key::MetricsListen).filter(|a| !a.is_empty()),
        metrics_for_anyone: text(Key::MetricsAccess).as_deref() == Some("any"),
        pid_file: text(Key::PidFile),
        log_file: text(Key::LogFile),
        user: text(Key::User),
        group: text(Key::Group),
        origins,
    })
}

fn origins_of(ok: &BTreeMap<Key, (Value, Origin)>, key: Key) -> Origin {
    ok.get(&key)
        .map(|(_, o)| o.clone())
        .unwrap_or(Origin::Default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(pairs: &[(Key, u64)]) -> Given {
        let mut g = Given::new();
        for (k, n) in pairs {
            g.set(*k, Value::Count(*n), Origin::Attribute);
        }
        g
    }

    #[test]
    fn auto_is_the_cpus_at_most_max_children() {
        let auto = |cpus: Option<u64>, max_children: Option<u64>| {
            let mut g = Given::new();
            g.set(Key::Prefork, Value::Text(AUTO.into()), Origin::Attribute);
            if let Some(m) = max_children {
                g.set(Key::MaxChildren, Value::Count(m), Origin::Attribute);
            }
            if let Some(n) = cpus {
                g.set_cpus(n, format!("{n} CPUs: counted"));
            }
            resolve(&g, Model::Async).expect("auto resolves")
        };
        let c = auto(Some(3), None);
        assert_eq!((c.workers, c.cpus, c.max_spare, c.max_children), (3, Some(3), 3, 6));
        assert_eq!(c.workers_auto.as_deref(), Some("3 CPUs: counted"));
        let c = auto(Some(8), Some(2));
        assert_eq!(c.workers, 2);
        assert!(c.workers_auto.as_deref().is_some_and(|w| w.ends_with("at most max_children (2)")), "{c:?}");
        // While the program compiles the CPUs are unknown: one, for the relations' sake.
        assert_eq!(auto(None, None).workers, 1);
        // A number is a number, whatever the CPUs.
        let mut g = given(&[(Key::Prefork, 5)]);
        g.set_cpus(2, String::new());
        let c = resolve(&g, Model::Async).expect("5");
        assert_eq!((c.workers, c.workers_auto), (5, None));
        assert!(setting(Key::Prefork).parse_text("auto").is_ok());
        assert!(setting(Key::Prefork).parse_text("autox").unwrap_err().contains("or auto"));
        assert!(setting(Key::MinSpare).parse_text("auto").is_err(), "only prefork takes auto");
    }

    #[test]
    fn the_signature_example_is_valid() {
        let c = resolve(
            &given(&[(Key::Prefork, 4), (Key::MaxSpare, 3)]),
            Model::Unknown,
        )
        .unwrap();
        assert_eq!(
            (c.workers, c.min_spare, c.max_spare, c.max_children),
            (4, 1, 3, 7)
        );
        assert_eq!(c.clients, 1000);
        assert_eq!(c.listen, vec!["127.0.0.1:8080".to_string()]);
    }

    #[test]
    fn defaults_alone_and_with_any_one_count_are_valid() {
        assert!(resolve(&Given::new(), Model::Async).is_ok());
        for key in [
            Key::Prefork,
            Key::MinSpare,
            Key::MaxSpare,
            Key::MaxChildren,
            Key::Requests,
            Key::Clients,
        ] {
            let (min, max) = match setting(key).kind {
                crate::Kind::Count { min, max } | crate::Kind::CountOrAuto { min, max } => (min, max),
                _ => unreachable!(),
            };
            for n in [min, min + 1, 7, 100, max] {
                let r = resolve(&given(&[(key, n)]), Model::Async);
                assert!(r.is_ok(), "{key:?} = {n}: {:?}", r.err());
            }
        }
    }

    #[test]
    fn relations_name_both_values() {
        let err = resolve(
            &given(&[(Key::MinSpare, 5), (Key::MaxSpare, 3)]),
            Model::Async,
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].key(), Some(Key::MinSpare));
        let text = err[0].to_string();
        assert!(
            text.contains("min_spare = 5") && text.contains("max_spare = 3"),
            "{text}"
        );
        let err = resolve(
            &given(&[(Key::Prefork, 9), (Key::MaxChildren, 8)]),
            Model::Async,
        )
        .unwrap_err();
        assert!(err[0].message.contains("at most max_children"));
    }

    #[test]
    fn every_problem_is_reported() {
        let mut g = given(&[
            (Key::Prefork, 0),
            (Key::Clients, 0),
            (Key::MinSpare, 9),
            (Key::MaxSpare, 2),
        ]);
        g.set(Key::Detach, Value::Flag(true), Origin::Attribute);
        g.set(Key::Foreground, Value::Flag(true), Origin::Attribute);
        assert_eq!(resolve(&g, Model::Async).unwrap_err().len(), 4);
    }

    #[test]
    fn a_later_source_overrides_without_a_clash() {
        let mut g = Given::new();
        g.set(Key::Detach, Value::Flag(true), Origin::Attribute);
        g.set(Key::Foreground, Value::Flag(true), Origin::CommandLine);
        let c = resolve(&g, Model::Async).unwrap();
        assert!(!c.detaches());
        assert_eq!(c.origin(Key::Foreground), Origin::CommandLine);
    }

    #[test]
    fn a_reload_keeps_every_setting_that_needs_a_restart() {
        let mut running_given = given(&[(Key::Prefork, 2)]);
        running_given.set(
            Key::LogFile,
            Value::Text("/var/log/a.log".into()),
            Origin::CommandLine,
        );
        running_given.set(Key::User, Value::Text("www-data".into()), Origin::Attribute);
        let running = resolve(&running_given, Model::Async).unwrap();
        let mut new_given = given(&[(Key::Prefork, 5)]);
        new_given.set(
            Key::LogFile,
            Value::Text("/var/log/b.log".into()),
            Origin::File("f".into()),
        );
        new_given.set(
            Key::PidFile,
            Value::Text("/run/b.pid".into()),
            Origin::File("f".into()),
        );
        new_given.set(
            Key::User,
            Value::Text("www-data".into()),
            Origin::File("f".into()),
        );
        let mut new = resolve(&new_given, Model::Async).unwrap();
        let kept = new.keep_restart_settings(&running);
        let keys: Vec<Key> = kept.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [Key::PidFile, Key::LogFile],
            "changed and needing a restart"
        );
        assert_eq!(kept[1].1, Value::Text("/var/log/b.log".into()));
        assert_eq!(new.workers, 5, "an applicable setting is applied");
        assert_eq!(
            (new.log_file.as_deref(), new.pid_file.as_deref()),
            (Some("/var/log/a.log"), None)
        );
        assert_eq!(new.origin(Key::LogFile), Origin::CommandLine);
        for s in crate::SETTINGS
            .iter()
            .filter(|s| s.reload == crate::Reload::NeedsRestart)
        {
            assert_eq!(new.value(s.key), running.value(s.key), "{}", s.name);
        }
    }

    #[test]
    fn a_plain_handler_serves_one_client() {
        assert_eq!(resolve(&Given::new(), Model::Sync).unwrap().clients, 1);
        let err = resolve(&given(&[(Key::Clients, 4)]), Model::Sync).unwrap_err();
        assert!(err[0].message.contains("plain fn"));
    }
}
