//! What `#[daemon::main]` calls: read the command line, check the configuration, bind the
//! listeners, run the program's `main` body, then hand over to the manager.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use daemon_config::{Given, Key, Model, Origin};
use tracing::{error, info_span, warn};

use crate::cli::{self, Command};
use crate::program::{Attr, MainOutput, Package};
use crate::hooks::{Handler, Hooks};
use crate::boot::listener::listen;
use crate::control::{self, Control};
use crate::boot::detach::{self, Readiness};
use crate::boot::logfile::LogFile;
use crate::boot::Housework;
use crate::manager::Manager;
use crate::boot::pidfile::PidFile;
use crate::boot::privileges;
use crate::sources::{self, Layers};

/// Runs the daemon. Exit status: 0 after a clean stop, 2 for a bad command line or
/// configuration (from any source), 1 for any other failure to start.
pub fn run<F, R>(attrs: &'static [(Key, Attr)], package: Package, main: F) -> !
where
    F: FnOnce() -> R,
    R: MainOutput,
{
    let code = start(attrs, package, None, main);
    std::process::exit(code)
}

/// [`run`], for a `main` that takes the program's own settings (a `clap::Args` type).
pub fn run_with_settings<T, F, R>(attrs: &'static [(Key, Attr)], package: Package, main: F) -> !
where
    T: crate::app::ProgramSettings,
    F: FnOnce(T) -> R,
    R: MainOutput,
{
    let body = move || match crate::app::try_settings::<T>() {
        Some(settings) => main((*settings).clone()),
        // Set before `main`'s body runs, always; no settings is a bug of the runtime's.
        None => {
            eprintln!("the program's settings were not resolved before main");
            std::process::exit(1)
        }
    };
    let code = start(attrs, package, Some(crate::app::AppSpec::of::<T>), body);
    std::process::exit(code)
}

/// What the start-up made, for the manager or for a plain daemon.
enum Started {
    Manager(Housework, Vec<crate::boot::listener::Listener>),
    Plain(Housework),
}

type AppSpecOf = fn(&str) -> Result<crate::app::AppSpec, String>;

/// The program's path as it was started (argv[0]), absolute but with its symlinks: relative to
/// the start directory, or found on `PATH` as the shell found it; else the running file's.
fn program_path(argv0: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let found = argv0.map(Path::new).and_then(|p| {
        if p.as_os_str().as_encoded_bytes().contains(&b'/') {
            let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().ok()?.join(p) };
            return runnable(&abs).then_some(abs);
        }
        std::env::var_os("PATH")
            .and_then(|dirs| std::env::split_paths(&dirs).map(|d| d.join(p)).find(|c| c.is_absolute() && runnable(c)))
    });
    found.or_else(|| std::env::current_exe().ok())
}

/// Why a start ended before the daemon ran, with the exit status each gets.
enum StartError {
    /// `--help`, `--version`, `--print-config`: done (0).
    Done,
    /// A bad command line, environment or configuration (2), each problem a line.
    Usage(Vec<String>),
    /// A control command ran; its exit status.
    Control(i32),
}

impl StartError {
    fn usage(why: impl std::fmt::Display) -> StartError {
        StartError::Usage(vec![why.to_string()])
    }

    /// Says why, and the exit status.
    fn exit(self, program: &str) -> i32 {
        match self {
            StartError::Done => 0,
            StartError::Usage(problems) => {
                for p in problems {
                    eprintln!("{program}: error: {p}");
                }
                2
            }
            StartError::Control(code) => code,
        }
    }
}

/// The program as it was started.
struct Invocation {
    args: Vec<OsString>,
    /// The path it was started from, for a hot upgrade: taken now, from where it started, with
    /// its symlinks (a deploy that switches a `current` link is picked up by the upgrade).
    exe: Option<PathBuf>,
    /// Its name, for messages.
    name: String,
}

impl Invocation {
    fn now(package: Package) -> Invocation {
        let args: Vec<OsString> = std::env::args_os().collect();
        let exe = program_path(args.first().map(OsString::as_os_str));
        let name = args
            .first()
            .map(std::path::Path::new)
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| package.name.to_string());
        Invocation { args, exe, name }
    }
}

/// Every source of settings, read: the layers to resolve (at start and on each reload), what the
/// command line asks for, and the environment's warnings (said once the log is set up).
struct Sources {
    layers: Layers,
    run: cli::Run,
    hooks: Hooks,
    env_warnings: Vec<String>,
}

/// Stage 1: the command line, the environment, the hooks.
fn read_sources(inv: &Invocation, attrs: &'static [(Key, Attr)], package: Package, app: Option<AppSpecOf>) -> Result<Sources, StartError> {
    let mut given = Given::new();
    for (key, attr) in attrs {
        given.set(*key, attr.value(), Origin::Attribute);
    }
    let app = app.map(|of| of(&inv.name)).transpose().map_err(StartError::usage)?;
    let run = match cli::parse(inv.args.clone(), app.as_ref()) {
        Ok(Command::Run(r)) => r,
        Ok(Command::Help) => {
            print!("{}", cli::help(&inv.name, package.name, package.version, &given, app.as_ref()));
            return Err(StartError::Done);
        }
        Ok(Command::Version) => {
            println!("{} {}", package.name, package.version);
            return Err(StartError::Done);
        }
        Err(e) => return Err(StartError::usage(format!("{e}\nTry `{} --help`.", inv.name))),
    };
    let (env, env_warnings) =
        sources::from_env(std::env::vars_os(), |n| app.as_ref().is_some_and(|a| a.has_env(n))).map_err(StartError::Usage)?;
    let app = app
        .map(|spec| crate::app::AppGiven::env_of(&spec, std::env::vars_os()).map(|env| (spec, env)))
        .transpose()
        .map_err(StartError::Usage)?
        .map(|(spec, env)| std::sync::Arc::new((spec, crate::app::AppGiven { cli: run.app_args.clone(), env })));
    let hooks = Hooks::collect().map_err(StartError::usage)?;
    let model = match hooks.on_accept.map(|a| a.handler) {
        Some(Handler::Async(_)) => Model::Async,
        Some(Handler::Sync(_)) => Model::Sync,
        None => Model::Unknown,
    };
    let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    crate::app::set_start_dir(base.clone());
    let file = run.config.clone().or_else(|| std::env::var_os(sources::CONFIG_ENV).map(Into::into)).map(|p| base.join(p));
    let layers = Layers { attributes: given, file, env, cli: run.given.clone(), model, base, tasks: hooks.tasks.clone(), app };
    Ok(Sources { layers, run, hooks, env_warnings })
}

/// Stage 2: one configuration from every source. A control command reads the file only to find
/// the daemon (its pid file, its user): a broken file must not keep `stop` from stopping it, and
/// `reload` asks the manager, which reads the file itself and says why it refuses it (exit 1).
fn resolve(inv: &Invocation, layers: &Layers, controls: bool) -> Result<sources::Resolved, StartError> {
    match layers.resolve_all() {
        Ok(r) => Ok(r),
        Err(problems) if controls && layers.file.is_some() => {
            // Without the file, but with what of it finds the daemon.
            let mut attributes = layers.attributes.clone();
            if let Some(file) = &layers.file {
                for (key, value, origin) in sources::salvage(file).iter() {
                    attributes.set(key, value.clone(), origin.clone());
                }
            }
            let without = Layers { file: None, attributes, ..layers.clone() };
            let resolved = without.resolve_all().map_err(|_| StartError::Usage(problems.clone()))?;
            for p in &problems {
                eprintln!("{}: warning: {p}", inv.name);
            }
            eprintln!("{}: warning: the config file is refused; finding the daemon by the other settings", inv.name);
            Ok(resolved)
        }
        Err(problems) => Err(StartError::Usage(problems)),
    }
}

/// Stage 3, for a control command: talk to the manager the pid file names.
fn control_command(inv: &Invocation, package: Package, command: Control, config: &daemon_config::Config) -> StartError {
    let mut wait = config.graceful_timeout + std::time::Duration::from_secs(10);
    if matches!(command, Control::Upgrade { .. }) {
        wait += config.upgrade_timeout;
    }
    let user = match config.user.as_deref().map(privileges::uid_of).transpose() {
        Ok(u) => u,
        Err(e) => return StartError::usage(e),
    };
    let caller = control::Caller { name: &inv.name, package: package.name, user };
    let pid_file = config.pid_file.as_deref().map(PathBuf::from);
    StartError::Control(control::run(command, pid_file.as_deref(), &caller, wait))
}

fn start<F, R>(attrs: &'static [(Key, Attr)], package: Package, app: Option<AppSpecOf>, main: F) -> i32
where
    F: FnOnce() -> R,
    R: MainOutput,
{
    let inv = Invocation::now(package);
    match start_daemon(&inv, attrs, package, app, main) {
        Ok(code) => code,
        Err(e) => e.exit(&inv.name),
    }
}

/// Every stage of a start, to the daemon's exit status.
fn start_daemon<F, R>(inv: &Invocation, attrs: &'static [(Key, Attr)], package: Package, app: Option<AppSpecOf>, main: F) -> Result<i32, StartError>
where
    F: FnOnce() -> R,
    R: MainOutput,
{
    let Sources { layers, run, hooks, env_warnings } = read_sources(inv, attrs, package, app)?;
    let controls = run.command.is_some_and(|c| c != Control::Start);
    let resolved = resolve(inv, &layers, controls)?;
    let (config, groups, app_resolved) = (resolved.config, resolved.groups, resolved.app);
    if !controls {
        hooks.check_pools(groups.iter().map(|g| g.name.as_str())).map_err(StartError::usage)?;
    }
    if run.print_config {
        print!("{}", sources::print_config(&config));
        print!("{}", sources::print_groups(&groups));
        if let Some(app) = &app_resolved {
            print!("{}", crate::app::print(app));
        }
        return Err(StartError::Done);
    }
    if let Some(app) = &app_resolved {
        crate::app::set_current(app.value.clone());
    }
    let detach = match run.command {
        Some(Control::Start) => true,
        Some(command) => return Err(control_command(inv, package, command, &config)),
        None => config.detaches(),
    };
    let program = inv.name.clone();
    let (args, exe) = (inv.args.clone(), inv.exe.clone());
    // Absolute already: taken from where the program started, before a detach moves to `/`.
    let pid_file = config.pid_file.as_deref().map(PathBuf::from);
    let log_path = config.log_file.as_deref().map(PathBuf::from);
    // Stage 4: sockets handed over by systemd or by the manager this one upgrades; then the
    // daemon keeps none of the other descriptors its starter left open (a pipe to a shell would
    // never see its end): only 0, 1, 2 and those. Before anything below opens what it keeps (the
    // user database's connections among them).
    let mut inherited = crate::boot::inherit::take().map_err(StartError::usage)?;
    crate::sys::close_from(u32::try_from(inherited.first_free).unwrap_or(3));
    // An upgrade's verdict goes to the old manager, on the pipe it handed over.
    let mut upgrade = inherited.upgrade.take().map(|(old, pipe)| (old, Readiness::upgrade(pipe)));
    // A new manager started by an upgrade is a daemon already: it does not detach again (its
    // parent waits for its verdict), but it leaves the start directory as a detach would (it
    // was started from it, for its relative paths).
    if detach && upgrade.is_some() {
        let _ = std::env::set_current_dir("/");
    }
    let detach = detach && upgrade.is_none();
    let identity = match privileges::resolve(config.user.as_deref(), config.group.as_deref()) {
        Ok(id) => id,
        Err(e) => {
            // The old manager's log says why its upgrade failed.
            if let Some((_, readiness)) = upgrade.as_mut() {
                readiness.failed(&e.to_string());
            }
            return Err(StartError::usage(e));
        }
    };
    if detach && log_path.is_none() {
        eprintln!("{program}: warning: detaching without a log file: logs go to /dev/null (set log_file or --log-file)");
    }
    // Our subscriber is the default while the daemon starts and `main`'s body runs; afterwards
    // it becomes the global one, unless that body installed the program's own.
    let ours = crate::boot::logging::dispatch(config.log_json);
    if config.log_json {
        crate::boot::logging::log_panics();
    }
    // A plain daemon takes `main` back, to run it as the daemon.
    let mut main = Some(main);
    let plan = Housekeeping { program: &program, detach, upgrade, identity, log_path, pid_file, env_warnings, inherited, config: &config, hooks: &hooks, package, restart: exe.map(|exe| crate::boot::Restart { exe, args }) };
    let started = tracing::dispatcher::with_default(&ours, || plan.set_up(&mut main));
    // Stage 6: the daemon runs.
    crate::boot::logging::install(ours);
    let (housework, listeners) = match started {
        Ok(Started::Manager(h, l)) => (h, l),
        Ok(Started::Plain(housework)) => {
            let span = info_span!("daemon", pid = std::process::id());
            let _entered = span.enter();
            return Ok(match main.take() {
                Some(main) => crate::plain::run(main, housework, layers, hooks, config),
                None => 1,
            });
        }
        Err(code) => return Ok(code),
    };
    let span = info_span!("manager", pid = std::process::id());
    let _entered = span.enter();
    let app = app_resolved.as_ref().map(|a| a.shown.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect());
    Ok(match Manager::new(config, groups, layers, hooks, listeners, housework, app) {
        Ok(manager) => manager.run(),
        Err(failed) => {
            let (e, mut housework) = *failed;
            error!("{e}");
            housework.readiness.failed(&e.to_string());
            1
        }
    })
}

/// Stage 5: what the daemon sets up and keeps, once it exists (detached, or told by an
/// upgrading manager): the log file, the metrics' and the program's listeners, the pid file,
/// the privilege drop, then `main`'s body for a manager. A failure from here on is also told to
/// whoever waits for the start, and exits 1.
struct Housekeeping<'a> {
    program: &'a str,
    detach: bool,
    upgrade: Option<(nix::unistd::Pid, Readiness)>,
    identity: privileges::Identity,
    log_path: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    env_warnings: Vec<String>,
    inherited: crate::boot::inherit::Inherited,
    config: &'a daemon_config::Config,
    hooks: &'a Hooks,
    package: Package,
    restart: Option<crate::boot::Restart>,
}

impl Housekeeping<'_> {
    fn set_up<F, R>(self, main: &mut Option<F>) -> Result<Started, i32>
    where
        F: FnOnce() -> R,
        R: MainOutput,
    {
        let Housekeeping { program, detach, upgrade, identity, log_path, pid_file, env_warnings, mut inherited, config, hooks, package, restart } = self;
        let upgraded_from = upgrade.as_ref().map(|(old, _)| *old);
        let mut readiness = if let Some((_, readiness)) = upgrade {
            readiness
        } else if detach {
            match detach::detach(program) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{program}: error: cannot detach: {e}");
                    return Err(1);
                }
            }
        } else {
            Readiness::none()
        };
        // The daemon exists from here: its control signals wait for its loop (noted before the
        // pid file can name it).
        if let Err(e) = crate::signals::note_early_signals() {
            readiness.failed(&format!("cannot set the manager's signals: {e}"));
            return Err(1);
        }
        // From here on, a failure is also told to the process that waits for the daemon to start.
        let mut fail = |why: String| {
            error!("{why}");
            readiness.failed(&why);
            Err(1)
        };
        let span = info_span!("manager", pid = std::process::id());
        let _entered = span.enter();
        // The program's metrics count from here (main's body may use them), in memory the
        // workers will share, or that the old manager of an upgrade counted in.
        let (metrics_area, note) = crate::metrics::area::install(inherited.metrics.take());
        if let Some(note) = note {
            warn!("{note}");
        }
        let user = identity.uid.map(|u| u.as_raw());
        let log_file = match log_path.as_deref().map(|p| LogFile::open(p, user)).transpose() {
            Ok(l) => l,
            Err(e) => {
                let shown = log_path.as_deref().map(Path::display).map(|p| p.to_string()).unwrap_or_default();
                return fail(format!("cannot open the log file {shown}: {e}"));
            }
        };
        for w in env_warnings {
            warn!("{w}");
        }
        if let Some(why) = &inherited.ignored {
            warn!("{why}");
        }
        // A manager that runs already is named before any address is tried: a second start
        // fails with "already running (pid N)", not with the port it holds. (Taking the file
        // itself waits until the sockets are bound: a start that cannot bind leaves it alone.)
        if let Some(path) = pid_file.as_deref() {
            if let Ok(crate::boot::pidfile::Holder::Manager(pid)) = crate::boot::pidfile::holder(path) {
                if Some(pid) != upgraded_from.map(|p| p.as_raw()) {
                    // The file says who holds it, and anyone who may write in its directory can
                    // say anything: a holder that does not answer as this program's manager is
                    // named as what it is.
                    return fail(match crate::control::verify_manager(pid, identity.uid.map(|u| u.as_raw()), package.name) {
                        Ok(()) => crate::boot::pidfile::PidFileError::Running { path: path.to_path_buf(), pid: Some(pid) }.to_string(),
                        Err(why) => format!(
                            "the pid file {} is locked by pid {pid}, which is not a verified manager of {}: {why}; nothing was signalled. \
                             Whoever may write in {} can take that name: choose a pid_file in a directory only the daemon's user can write",
                            path.display(),
                            package.name,
                            path.parent().map(Path::display).map(|d| d.to_string()).unwrap_or_default()
                        ),
                    });
                }
            }
        }
        // The metrics' socket first: an old manager hands it over with the others.
        let handed_metrics = match (inherited.source, config.metrics_listen.as_deref()) {
            (Some(crate::boot::listener::Source::Upgrade), Some(addr)) => crate::boot::listener::take_metrics(&mut inherited.listeners, addr),
            _ => None,
        };
        let metrics = match handed_metrics.map(Ok).or_else(|| config.metrics_listen.as_deref().map(crate::boot::listener::bind_metrics)).transpose() {
            Ok(m) => m,
            Err(e) => return fail(format!("metrics_listen: {e}")),
        };
        // Only a program that accepts connections listens.
        let addresses: &[String] = if hooks.on_accept.is_some() { &config.listen } else { &[] };
        if let Some(cap) = crate::boot::listener::somaxconn().filter(|&cap| !addresses.is_empty() && config.backlog > cap) {
            warn!(backlog = config.backlog, somaxconn = cap, "backlog is more than the kernel's net.core.somaxconn: each accept queue holds {cap}; raise it (sysctl -w net.core.somaxconn={}) or lower backlog", config.backlog);
        }
        crate::worker::accept::set_nodelay(config.tcp_nodelay);
        let access = match privileges::socket_access(config, identity) {
            Ok(a) => a,
            Err(e) => return fail(e.to_string()),
        };
        let options = crate::boot::listener::Options::of(config);
        let listeners = match listen(addresses, std::mem::take(&mut inherited.listeners), inherited.source, &options, access) {
            Ok(l) => l,
            Err(e) => return fail(e.to_string()),
        };
        // From here, a start that fails removes the socket files it bound.
        let mut fail = |why: String| {
            crate::boot::listener::forget_bound(&listeners);
            fail(why)
        };
        let access_set = config.socket_user.is_some() || config.socket_group.is_some() || config.socket_mode != 0o660;
        if let Some(l) = listeners.iter().find(|l| matches!(l.addr, crate::net::Local::Abstract(_))).filter(|_| access_set) {
            warn!(addr = %l.addr, "socket_mode, socket_user and socket_group do not apply to an abstract socket, which has no file: any local process may connect to it; check Connection::peer_cred");
        }
        // A plain handler that takes a TcpStream cannot be given a Unix socket's connections.
        if let (Some(unix), Some(accept)) = (listeners.iter().find(|l| l.addr.is_unix()), hooks.on_accept.as_ref()) {
            if (accept.tcp_only)() {
                return fail(format!(
                    "cannot serve {} with {}: it takes a std::net::TcpStream, so it serves TCP only; take a daemon::net::Stream \
                     (TCP or Unix), make it an async handler (daemon::Connection), or listen on TCP only",
                    unix.addr, accept.name
                ));
            }
        }
        // TLS: the files are read here, before privileges are dropped.
        if config.tls_cert.is_some() && !addresses.is_empty() {
            if let Err(why) = crate::boot::start_tls(config, hooks, user) {
                return fail(why);
            }
        }
        let handed_by = upgraded_from.map(|p| p.as_raw());
        let pid_lock = match pid_file.as_deref().map(|p| PidFile::acquire(p, handed_by, user)).transpose() {
            Ok(p) => p,
            Err(e) => return fail(e.to_string()),
        };
        if let Err(e) = privileges::drop_to(identity) {
            return fail(e.to_string());
        }
        let housework = Housework { readiness, pid_file: pid_lock, log_file, package, upgraded_from, restart, metrics, metrics_area };
        if !hooks.has_workers() {
            // No worker hooks: `main`'s body is the daemon.
            return Ok(Started::Plain(housework));
        }
        let mut housework = housework;
        let mut fail = |why: String| {
            crate::boot::listener::forget_bound(&listeners);
            error!("{why}");
            housework.readiness.failed(&why);
            Err(1)
        };
        let Some(main) = main.take() else { return fail("main's body ran already".to_string()) };
        if let Err(e) = main().into_result() {
            return fail(format!("main returned an error; not starting: {e}"));
        }
        if let Some(n) = crate::sys::proc::threads().filter(|n| *n > 1) {
            return fail(format!(
                "main's body left {n} threads running; fork() copies only the calling thread, so \
                 their locks would stay held in every worker: join them before main returns, or \
                 start them in an #[daemon::on_child] hook"
            ));
        }
        Ok(Started::Manager(housework, listeners))
    }
}
