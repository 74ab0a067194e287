#include "common/daemon_main.h"

#include <getopt.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <string_view>

#include "common/check.h"
#include "common/control_server.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/net.h"
#include "common/supervisor.h"
#include "sunjammer_build.h"

namespace sj {

std::string
pid_file_path(const Config& config, const std::string& daemon)
{
    return config.global.run_dir + "/" + daemon + ".pid";
}

std::string
control_socket_path(const Config& config, const std::string& daemon)
{
    return config.global.run_dir + "/" + daemon + ".ctl";
}

namespace {

struct Options {
    std::string file = kDefaultConfigFile;
    bool check_only = false;
    bool foreground = false;
    bool verbose = false;
};

// Every loop, the parent's and the workers', runs on epoll, whatever
// LIBEV_FLAGS says: the other Linux backends are slower here, and libev's
// io_uring one aborts under load (an assertion in ev_iouring.c, seen with
// balancerd at 30,000 requests a second), so an environment variable must
// not be able to choose them.
constexpr unsigned kLoopFlags = static_cast<unsigned>(EVBACKEND_EPOLL) |
                                static_cast<unsigned>(EVFLAG_NOENV);

void
usage(const char* name, FILE* out)
{
    std::fprintf(out, "usage: %s [-dhnVv] [-f file]\n", name);
}

// Loads the configuration and applies the daemon's own requirements.
std::shared_ptr<const Config>
load_for(const DaemonSpec& spec, const std::string& file)
{
    auto config = load_config(file);
    if (spec.check)
        spec.check(*config);
    return config;
}

std::string
listener_key(const ListenConfig& lc)
{
    return lc.address.to_string();
}

// How long the parent lets a retired child run before SIGKILL: a little
// longer than the child's own global.shutdown_timeout, so a child that
// gives up on its in-flight work exits on its own and is reaped as such.
double
kill_grace(const Config& config) noexcept
{
    return config.global.shutdown_timeout + 1.0;
}

// Closes the parent's copy of a listening socket; a Unix socket's path goes
// too, so clients get "no such file" instead of connecting to nobody. The
// children that still hold the socket keep serving on it until they stop.
void
close_listener(const std::string& key, UniqueFd* fd) noexcept
{
    constexpr std::string_view kUnix = "unix:";
    if (key.compare(0, kUnix.size(), kUnix) == 0) {
        struct stat st;
        std::string path = key.substr(kUnix.size());
        if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(path.c_str());
    }
    fd->reset();
}

// The privileged parent. Owns everything a child must not: the pid file
// lock, the control socket, the canonical copies of the listening sockets.
class Parent {
public:
    Parent(const DaemonSpec& spec, const Options& opts,
           std::shared_ptr<const Config> config)
        : spec_(spec), opts_(opts), config_(std::move(config)),
          loop_(ev_default_loop(kLoopFlags)),
          supervisor_(loop_, spec.child_role)
    {}

    int run();

private:
    bool start(std::string* err);
    bool bind_listeners(const Config& config,
                        std::map<std::string, UniqueFd>* out, std::string* err);
    void start_children(double grace);
    ControlReply reload();
    void stop(const char* why);
    void register_commands();
    std::string status_text() const;
    void after_fork() noexcept;
    int run_child(std::shared_ptr<const Config> config, int index,
                  unsigned gen);

    static void on_signal(struct ev_loop*, ev_signal* w, int) noexcept;

    const DaemonSpec& spec_;
    Options opts_;
    std::shared_ptr<const Config> config_;
    struct ev_loop* loop_;
    Supervisor supervisor_;
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<DaemonState> state_;
    PidFile pid_file_;
    Credentials creds_;
    std::map<std::string, UniqueFd> listeners_;
    unsigned generation_ = 1;
    time_t started_ = time(nullptr);
    bool stopping_ = false;
    ev_signal sig_hup_{}, sig_term_{}, sig_int_{}, sig_usr1_{};
    ev_timer stop_timer_{};
    UniqueFd ready_;  // daemon mode: tells the starting process we are up
};

bool
Parent::bind_listeners(const Config& config,
                       std::map<std::string, UniqueFd>* out, std::string* err)
{
    if (!spec_.listeners)
        return true;
    for (const ListenConfig& lc : spec_.listeners(config)) {
        std::string key = listener_key(lc);
        if (out->count(key))
            continue;
        if (listeners_.count(key)) {
            // Already bound by this process: an empty placeholder says
            // "keep that socket" (commit_listeners), so a reload never
            // refuses a connection.
            out->emplace(key, UniqueFd());
            continue;
        }
        std::string e;
        UniqueFd fd = listen_socket(lc.address, 1024, &e);
        if (!fd) {
            *err = config.file + ":" + std::to_string(lc.line) + ": listen " +
                   key + ": " + e;
            return false;
        }
        if (lc.address.is_unix() && geteuid() == 0) {
            // Children of other daemons (cached's workers) connect to it
            // as global.user.
            if (chown(lc.address.path.c_str(), creds_.uid, creds_.gid) < 0 ||
                chmod(lc.address.path.c_str(), 0660) < 0)
                log_warn("%s: %s", lc.address.path.c_str(),
                         std::strerror(errno));
        }
        log_info("listening on %s", key.c_str());
        out->emplace(key, std::move(fd));
    }
    return true;
}

bool
Parent::start(std::string* err)
{
    const GlobalConfig& g = config_->global;
    if (geteuid() == 0 && !resolve_credentials(g.user, g.group, &creds_, err))
        return false;
    if (geteuid() != 0) {
        creds_.uid = geteuid();
        creds_.gid = getegid();
    }
    if (!make_dirs(g.run_dir, 0755, err))
        return false;
    // Everything that can fail for a reason the operator must see happens
    // before we detach, while stderr is still the terminal.
    std::string e;
    if (!pid_file_.acquire(pid_file_path(*config_, spec_.name), &e)) {
        *err = std::string(spec_.name) + ": " + e;
        return false;
    }
    long nofile = raise_nofile(g.nofile);
    if (nofile < g.nofile)
        log_notice("file descriptor limit is %ld, below global.nofile %d",
                   nofile, g.nofile);
    std::map<std::string, UniqueFd> fds;
    if (!bind_listeners(*config_, &fds, err))
        return false;
    listeners_ = std::move(fds);

    if (spec_.make_state) {
        state_ = spec_.make_state(loop_);
        if (!state_->configure(config_, generation_, err))
            return false;
    }
    control_ = std::make_unique<ControlServer>(
        loop_, control_socket_path(*config_, spec_.name));
    register_commands();
    if (state_)
        state_->add_commands(*control_);
    long admin = g.admin_group.empty() ? -1 : group_id(g.admin_group);
    if (!g.admin_group.empty() && admin < 0)
        log_warn("global.admin_group '%s' does not exist",
                 g.admin_group.c_str());
    if (!control_->open(geteuid() == 0 ? creds_.uid : static_cast<uid_t>(-1),
                        geteuid() == 0 ? creds_.gid : static_cast<gid_t>(-1),
                        admin, err))
        return false;

    if (!opts_.foreground) {
        if (!daemonize(&ready_, err))
            return false;
        ev_loop_fork(loop_);
        if (!pid_file_.update(err))
            return false;
        LogLevel level = opts_.verbose ? LogLevel::kDebug : g.log_level;
        if (!g.log_file.empty()) {
            log_set_file_owner(creds_.uid, creds_.gid);
            if (!log_open(spec_.name, LogTarget::kFile, g.log_file, level)) {
                *err = "cannot open log file " + g.log_file + ": " +
                       std::strerror(errno);
                return false;
            }
        } else {
            log_open(spec_.name, LogTarget::kSyslog, "", level);
        }
    }

    supervisor_.set_after_fork([this] { after_fork(); });
    supervisor_.set_on_reaped([this](pid_t pid) {
        if (state_)
            state_->child_exited(pid);
    });
    struct {
        ev_signal* w;
        int sig;
    } sigs[] = {{&sig_hup_, SIGHUP},
                {&sig_term_, SIGTERM},
                {&sig_int_, SIGINT},
                {&sig_usr1_, SIGUSR1}};
    for (auto& s : sigs) {
        ev_signal_init(s.w, on_signal, s.sig);
        s.w->data = this;
        ev_signal_start(loop_, s.w);
    }
    signal(SIGPIPE, SIG_IGN);
    return true;
}

void
Parent::start_children(double grace)
{
    auto config = config_;
    unsigned gen = generation_;
    supervisor_.start_generation(
        gen, spec_.children(*config),
        [this, config, gen](int index, unsigned g) {
            CHECK(g == gen);
            return run_child(config, index, g);
        },
        grace);
}

int
Parent::run()
{
    std::string err;
    if (!start(&err)) {
        log_error("%s", err.c_str());
        return 1;
    }
    log_notice("started (pid %d, %s, generation %u)",
               static_cast<int>(getpid()), config_->file.c_str(), generation_);
    start_children(kill_grace(*config_));
    daemon_ready(&ready_);
    ev_run(loop_, 0);
    if (control_)
        control_->close();
    pid_file_.remove();
    log_notice("stopped");
    return 0;
}

void
Parent::after_fork() noexcept
{
    // The child keeps only what it needs: the listening sockets (which it
    // does not own) and the parent-watch pipe. The parent's loop is left
    // behind, never run again in the child.
    ev_signal* sigs[] = {&sig_hup_, &sig_term_, &sig_int_, &sig_usr1_};
    for (ev_signal* s : sigs)
        ev_signal_stop(loop_, s);
    ev_timer_stop(loop_, &stop_timer_);
    if (control_)
        control_->abandon();
    pid_file_.abandon();
    ready_.reset();
    if (state_)
        state_->after_fork();
}

ControlReply
Parent::reload()
{
    if (stopping_)
        return {500, "not reloading: stopping\n"};
    std::shared_ptr<const Config> next;
    try {
        next = load_for(spec_, opts_.file);
    } catch (const ConfigError& e) {
        log_error("reload failed, keeping generation %u: %s", generation_,
                  e.what());
        return {500, std::string(e.what()) + "\n"};
    }
    const GlobalConfig& g = next->global;
    Credentials creds = creds_;
    std::string err;
    if (geteuid() == 0 && !resolve_credentials(g.user, g.group, &creds, &err)) {
        log_error("reload failed, keeping generation %u: %s", generation_,
                  err.c_str());
        return {500, err + "\n"};
    }
    std::map<std::string, UniqueFd> fds;
    if (!bind_listeners(*next, &fds, &err) ||
        (state_ && !state_->configure(next, generation_ + 1, &err))) {
        // Close what we opened for nothing; the placeholders hold nothing.
        for (auto& [key, fd] : fds)
            if (fd)
                close_listener(key, &fd);
        log_error("reload failed, keeping generation %u: %s", generation_,
                  err.c_str());
        return {500, err + "\n"};
    }
    for (auto& [key, fd] : fds) {
        if (!fd) {
            auto it = listeners_.find(key);
            fd = std::move(it->second);
            listeners_.erase(it);
        }
    }
    for (auto& [key, fd] : listeners_) {
        log_info("no longer listening on %s", key.c_str());
        close_listener(key, &fd);
    }
    listeners_ = std::move(fds);
    if (g.run_dir != config_->global.run_dir)
        log_warn("global.run_dir changed to %s: takes effect at restart",
                 g.run_dir.c_str());
    creds_ = creds;
    if (!opts_.verbose)
        log_set_level(g.log_level);
    double grace = kill_grace(*config_);
    config_ = std::move(next);
    ++generation_;
    start_children(grace);
    log_notice("reloaded %s: generation %u", config_->file.c_str(),
               generation_);
    return {200, "reloaded: generation " + std::to_string(generation_) + "\n"};
}

void
Parent::stop(const char* why)
{
    if (stopping_)
        return;
    stopping_ = true;
    log_notice("stopping (%s)", why);
    // Stop accepting: children close their copies as they shut down.
    for (auto& [key, fd] : listeners_)
        close_listener(key, &fd);
    listeners_.clear();
    supervisor_.stop_all(kill_grace(*config_), [this] {
        ev_break(loop_, EVBREAK_ALL);
    });
    // Children that ignore SIGKILL do not exist, but a wedged reap should
    // not keep the parent forever either.
    ev_timer_init(
        &stop_timer_,
        [](struct ev_loop* l, ev_timer*, int) noexcept {
            log_error("children did not exit; stopping anyway");
            ev_break(l, EVBREAK_ALL);
        },
        config_->global.shutdown_timeout + 5.0, 0.);
    ev_timer_start(loop_, &stop_timer_);
}

std::string
Parent::status_text() const
{
    char started[64];
    struct tm tm;
    gmtime_r(&started_, &tm);
    std::strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &tm);
    std::string s;
    s += "daemon: " + std::string(spec_.name) + "\n";
    s += "version: " PACKAGE_VERSION "\n";
    s += "pid: " + std::to_string(getpid()) + "\n";
    s += "uptime: " + std::to_string(time(nullptr) - started_) + "\n";
    s += "config: " + config_->file + "\n";
    s += "generation: " + std::to_string(generation_) + "\n";
    s += "workers: " + std::to_string(supervisor_.running()) + "/" +
         std::to_string(supervisor_.configured()) + "\n";
    s += "started: " + std::string(started) + "\n";
    s += std::string("state: ") + (stopping_ ? "stopping" : "running") + "\n";
    if (state_)
        s += state_->status();
    return s;
}

void
Parent::register_commands()
{
    using Args = std::vector<std::string>;
    auto no_args = [](const Args& a, const char* cmd, ControlReply* r) {
        if (a.empty())
            return true;
        *r = {400, std::string("usage: ") + cmd + "\n"};
        return false;
    };
    control_->add("ping", false, [=](const Args& a, const ControlPeer&) {
        ControlReply r{200, "pong\n"};
        no_args(a, "ping", &r);
        return r;
    });
    control_->add("status", false,
                  [=, this](const Args& a, const ControlPeer&) {
                      ControlReply r{200, status_text()};
                      no_args(a, "status", &r);
                      return r;
                  });
    control_->add("show config", false,
                  [=, this](const Args& a, const ControlPeer&) {
                      ControlReply r{200, dump_config(*config_)};
                      no_args(a, "show config", &r);
                      return r;
                  });
    control_->add("reload", true,
                  [=, this](const Args& a, const ControlPeer& p) {
                      ControlReply r;
                      if (!no_args(a, "reload", &r))
                          return r;
                      log_info("reload asked on the control socket (uid %d)",
                               static_cast<int>(p.uid));
                      return reload();
                  });
    control_->add("stop", true, [=, this](const Args& a, const ControlPeer& p) {
        ControlReply r{200, "stopping\n"};
        if (!no_args(a, "stop", &r))
            return r;
        log_info("stop asked on the control socket (uid %d)",
                 static_cast<int>(p.uid));
        stop("control socket");
        return r;
    });
}

void
Parent::on_signal(struct ev_loop*, ev_signal* w, int) noexcept
{
    auto* self = static_cast<Parent*>(w->data);
    switch (w->signum) {
    case SIGHUP:
        log_info("SIGHUP: reloading %s", self->opts_.file.c_str());
        self->reload();
        break;
    case SIGTERM: self->stop("SIGTERM"); break;
    case SIGINT: self->stop("SIGINT"); break;
    case SIGUSR1:
        if (log_reopen())
            log_info("SIGUSR1: reopened log file");
        else
            log_error("SIGUSR1: cannot reopen %s: %s",
                      self->config_->global.log_file.c_str(),
                      std::strerror(errno));
        self->supervisor_.signal_all(SIGUSR1);
        break;
    }
}

// ---------------------------------------------------------------- children

// The child's side: one loop, the worker, and the signals that concern it.
struct ChildRun {
    struct ev_loop* loop = nullptr;
    Worker* worker = nullptr;
    bool shutting_down = false;
    double grace = 10.0;
    ev_signal sig_term{}, sig_int{}, sig_usr1{}, sig_hup{};
    ev_io parent_watch{};
    ev_timer grace_timer{};

    void shutdown(const char* why) noexcept
    {
        if (shutting_down)
            return;
        shutting_down = true;
        log_debug("shutting down (%s)", why);
        ev_io_stop(loop, &parent_watch);
        ev_timer_set(&grace_timer, grace, 0.);
        ev_timer_start(loop, &grace_timer);
        worker->shutdown([this] { ev_break(loop, EVBREAK_ALL); });
    }
};

int
Parent::run_child(std::shared_ptr<const Config> config, int index, unsigned gen)
{
    log_set_role(std::string(spec_.child_role) + " " + std::to_string(index));
    std::string err;
    if (!drop_privileges(creds_, &err)) {
        log_error("%s", err.c_str());
        return 1;
    }
    ChildRun run;
    run.loop = ev_loop_new(kLoopFlags);
    CHECK(run.loop != nullptr);
    run.grace = config->global.shutdown_timeout;

    WorkerContext ctx;
    ctx.loop = run.loop;
    ctx.config = config;
    ctx.index = index;
    ctx.generation = gen;
    ctx.state = state_.get();
    if (spec_.listeners)
        for (const ListenConfig& lc : spec_.listeners(*config)) {
            auto it = listeners_.find(listener_key(lc));
            CHECK(it != listeners_.end());
            ctx.listeners.push_back({lc, it->second.get()});
        }
    std::unique_ptr<Worker> worker = spec_.make_worker(ctx);
    if (!worker)
        return 1;
    run.worker = worker.get();

    auto on_sig = [](struct ev_loop*, ev_signal* w, int) noexcept {
        auto* r = static_cast<ChildRun*>(w->data);
        if (w->signum == SIGUSR1)
            log_reopen();
        else if (w->signum == SIGTERM || w->signum == SIGINT)
            r->shutdown(w->signum == SIGTERM ? "SIGTERM" : "SIGINT");
        // SIGHUP: the parent reloads and replaces us; nothing to do here.
    };
    struct {
        ev_signal* w;
        int sig;
    } sigs[] = {{&run.sig_term, SIGTERM},
                {&run.sig_int, SIGINT},
                {&run.sig_usr1, SIGUSR1},
                {&run.sig_hup, SIGHUP}};
    for (auto& s : sigs) {
        ev_signal_init(s.w, on_sig, s.sig);
        s.w->data = &run;
        ev_signal_start(run.loop, s.w);
    }
    ev_io_init(
        &run.parent_watch,
        [](struct ev_loop*, ev_io* w, int) noexcept {
            auto* r = static_cast<ChildRun*>(w->data);
            log_warn("parent process is gone");
            r->shutdown("parent gone");
        },
        supervisor_.parent_watch_fd(), EV_READ);
    run.parent_watch.data = &run;
    ev_io_start(run.loop, &run.parent_watch);
    ev_timer_init(
        &run.grace_timer,
        [](struct ev_loop* l, ev_timer*, int) noexcept {
            log_warn(
                "in-flight work did not finish within "
                "global.shutdown_timeout; exiting");
            ev_break(l, EVBREAK_ALL);
        },
        0., 0.);
    ev_run(run.loop, 0);
    worker.reset();
    return 0;
}

}  // namespace

int
daemon_main(int argc, char** argv, const DaemonSpec& spec)
{
    Options opts;
    int ch;
    while ((ch = getopt(argc, argv, "df:hnVv")) != -1) {
        switch (ch) {
        case 'd': opts.foreground = true; break;
        case 'f': opts.file = optarg; break;
        case 'n': opts.check_only = true; break;
        case 'v': opts.verbose = true; break;
        case 'V':
            std::printf("%s (sunjammer) %s\n", spec.name, PACKAGE_VERSION);
            return 0;
        case 'h': usage(spec.name, stdout); return 0;
        default: usage(spec.name, stderr); return 1;
        }
    }
    if (optind != argc) {
        usage(spec.name, stderr);
        return 1;
    }

    std::shared_ptr<const Config> config;
    try {
        config = load_for(spec, opts.file);
    } catch (const ConfigError& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    if (opts.check_only) {
        std::fprintf(stderr, "%s: configuration file %s is valid\n", spec.name,
                     opts.file.c_str());
        return 0;
    }

    // stderr until the parent has detached (Parent::start); when it is
    // going to detach, only what needs the operator's eye reaches the
    // terminal of the init script that started it.
    LogLevel level = opts.verbose ? LogLevel::kDebug : config->global.log_level;
    if (!opts.foreground && level > LogLevel::kWarn)
        level = LogLevel::kWarn;
    log_open(spec.name, LogTarget::kStderr, "", level);
    Parent parent(spec, opts, std::move(config));
    return parent.run();
}

}  // namespace sj
