#include "common/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/check.h"
#include "common/log.h"

namespace sj {

Supervisor::Supervisor(struct ev_loop* loop, std::string role)
    : loop_(loop), role_(std::move(role))
{
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    watch_rd_.reset(p[0]);
    watch_wr_.reset(p[1]);
    ev_child_init(&child_watcher_, on_child, 0, 0);
    child_watcher_.data = this;
    ev_child_start(loop_, &child_watcher_);
}

Supervisor::~Supervisor()
{
    ev_child_stop(loop_, &child_watcher_);
    for (auto& [ptr, c] : children_) {
        ev_timer_stop(loop_, &c->respawn);
        ev_timer_stop(loop_, &c->kill);
    }
}

bool
Supervisor::start_generation(unsigned gen, int count, ChildMain body,
                             double grace)
{
    for (auto& [ptr, c] : children_)
        if (!c->retired)
            retire(c.get(), grace);
    gen_ = gen;
    count_ = count;
    body_ = std::move(body);
    bool ok = true;
    for (int i = 0; i < count; ++i) {
        auto c = std::make_unique<Child>();
        c->sup = this;
        c->index = i;
        c->gen = gen;
        ev_timer_init(&c->respawn, on_respawn, 0., 0.);
        ev_timer_init(&c->kill, on_kill, 0., 0.);
        c->respawn.data = c.get();
        c->kill.data = c.get();
        Child* raw = c.get();
        children_.emplace(raw, std::move(c));
        if (!spawn(raw)) {
            ok = false;
            ev_timer_set(&raw->respawn, raw->backoff, 0.);
            ev_timer_start(loop_, &raw->respawn);
        }
    }
    maybe_done();
    return ok;
}

bool
Supervisor::spawn(Child* c) noexcept
{
    pid_t pid = fork();
    if (pid < 0) {
        log_error("%s %d: fork: %s", role_.c_str(), c->index,
                  std::strerror(errno));
        return false;
    }
    if (pid == 0) {
        watch_wr_.reset();
        int status = 1;
        try {
            if (after_fork_)
                after_fork_();
            status = body_(c->index, c->gen);
        } catch (const std::exception& e) {
            log_error("%s %d: %s", role_.c_str(), c->index, e.what());
        }
        _exit(status);
    }
    c->pid = pid;
    c->started = ev_now(loop_);
    log_debug("%s %d started (pid %d, generation %u)", role_.c_str(), c->index,
              static_cast<int>(pid), c->gen);
    return true;
}

void
Supervisor::retire(Child* c, double grace) noexcept
{
    c->retired = true;
    ev_timer_stop(loop_, &c->respawn);
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGTERM);
    ev_timer_stop(loop_, &c->kill);
    ev_timer_set(&c->kill, grace, 0.);
    ev_timer_start(loop_, &c->kill);
}

void
Supervisor::stop_all(double grace, std::function<void()> done)
{
    stopping_ = true;
    on_stopped_ = std::move(done);
    for (auto& [ptr, c] : children_)
        if (!c->retired)
            retire(c.get(), grace);
    maybe_done();
}

void
Supervisor::signal_all(int sig) noexcept
{
    for (auto& [ptr, c] : children_)
        if (c->pid > 0)
            kill(c->pid, sig);
}

int
Supervisor::running() const noexcept
{
    return static_cast<int>(
        std::count_if(children_.begin(), children_.end(), [](const auto& kv) {
            return kv.second->pid > 0 && !kv.second->retired;
        }));
}

void
Supervisor::on_child(struct ev_loop*, ev_child* w, int) noexcept
{
    auto* self = static_cast<Supervisor*>(w->data);
    self->reaped(w->rpid, w->rstatus);
}

void
Supervisor::reaped(pid_t pid, int status) noexcept
{
    auto it =
        std::find_if(children_.begin(), children_.end(),
                     [pid](const auto& kv) { return kv.second->pid == pid; });
    if (it == children_.end())
        return;  // a notify script or other helper, not one of ours
    Child* c = it->second.get();
    ev_timer_stop(loop_, &c->kill);
    c->pid = 0;
    if (on_reaped_)
        on_reaped_(pid);
    char how[96];
    if (WIFSIGNALED(status))
        std::snprintf(how, sizeof how, "killed by signal %d (%s)",
                      WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        std::snprintf(how, sizeof how, "exited with status %d",
                      WEXITSTATUS(status));
    if (c->retired) {
        bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (clean)
            log_debug("%s %d (pid %d, generation %u) finished", role_.c_str(),
                      c->index, static_cast<int>(pid), c->gen);
        else
            log_notice("%s %d (pid %d, generation %u) %s while stopping",
                       role_.c_str(), c->index, static_cast<int>(pid), c->gen,
                       how);
        children_.erase(it);
        maybe_done();
        return;
    }
    double lived = ev_now(loop_) - c->started;
    if (lived >= kStableLife)
        c->backoff = kMinBackoff;
    log_error("%s %d (pid %d) %s; respawning in %.1f s", role_.c_str(),
              c->index, static_cast<int>(pid), how, c->backoff);
    ev_timer_set(&c->respawn, c->backoff, 0.);
    ev_timer_start(loop_, &c->respawn);
    if (lived < kQuickDeath)
        c->backoff = std::min(c->backoff * 2, kMaxBackoff);
}

void
Supervisor::on_respawn(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* c = static_cast<Child*>(w->data);
    Supervisor* self = c->sup;
    if (c->retired || self->stopping_)
        return;
    if (!self->spawn(c)) {
        ev_timer_set(&c->respawn, c->backoff, 0.);
        ev_timer_start(self->loop_, &c->respawn);
        c->backoff = std::min(c->backoff * 2, kMaxBackoff);
    }
}

void
Supervisor::on_kill(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* c = static_cast<Child*>(w->data);
    if (c->pid > 0) {
        log_warn(
            "%s %d (pid %d) still running after its grace period; "
            "killing it",
            c->sup->role_.c_str(), c->index, static_cast<int>(c->pid));
        kill(c->pid, SIGKILL);
    }
}

void
Supervisor::maybe_done() noexcept
{
    // A retired slot that never got a process (fork failed) has nothing to
    // wait for.
    for (auto it = children_.begin(); it != children_.end();) {
        if (it->second->retired && it->second->pid == 0) {
            ev_timer_stop(loop_, &it->second->respawn);
            ev_timer_stop(loop_, &it->second->kill);
            it = children_.erase(it);
        } else {
            ++it;
        }
    }
    if (stopping_ && children_.empty() && on_stopped_) {
        auto done = std::move(on_stopped_);
        on_stopped_ = nullptr;
        done();
    }
}

}  // namespace sj
