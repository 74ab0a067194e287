#include "heartbeatd/notify.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace sj::hb {

NotifyRunner::~NotifyRunner()
{
    for (auto& [key, r] : running_) {
        ev_child_stop(loop_, &r->child);
        ev_timer_stop(loop_, &r->timer);
    }
}

void
NotifyRunner::abandon() noexcept
{
    for (auto& [key, r] : running_) {
        ev_child_stop(loop_, &r->child);
        ev_timer_stop(loop_, &r->timer);
    }
    running_.clear();
    queued_.clear();
}

void
NotifyRunner::run(NotifyEvent ev) noexcept
{
    std::string key = ev.pool + "/" + ev.node;
    queued_[key].push_back(std::move(ev));
    if (running_.count(key) == 0)
        start_next(key);
}

void
NotifyRunner::start_next(const std::string& key) noexcept
{
    auto q = queued_.find(key);
    if (q == queued_.end() || q->second.empty()) {
        if (q != queued_.end())
            queued_.erase(q);
        return;
    }
    auto r = std::make_unique<Running>();
    r->owner = this;
    r->key = key;
    r->ev = std::move(q->second.front());
    q->second.pop_front();
    const NotifyEvent& ev = r->ev;
    pid_t pid = fork();
    if (pid < 0) {
        log_error("%s: cannot run notify script: fork: %s", key.c_str(),
                  std::strerror(errno));
        return;
    }
    if (pid == 0) {
        // Its own session: the timeout kills the whole group, and a
        // signal meant for heartbeatd's group does not reach it.
        setsid();
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        for (int sig : {SIGPIPE, SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGCHLD})
            signal(sig, SIG_DFL);
        setenv("SJ_POOL", ev.pool.c_str(), 1);
        setenv("SJ_NODE", ev.node.c_str(), 1);
        setenv("SJ_ADDRESS", ev.address.c_str(), 1);
        setenv("SJ_OLD_STATE", ev.old_state.c_str(), 1);
        setenv("SJ_NEW_STATE", ev.new_state.c_str(), 1);
        setenv("SJ_REASON", ev.reason.c_str(), 1);
        execl("/bin/sh", "sh", "-c", ev.script.c_str(),
              static_cast<char*>(nullptr));
        _exit(127);
    }
    r->pid = pid;
    log_debug("%s: notify script started (pid %d): %s -> %s", key.c_str(),
              static_cast<int>(pid), ev.old_state.c_str(),
              ev.new_state.c_str());
    ev_child_init(&r->child, on_child, pid, 0);
    r->child.data = r.get();
    ev_child_start(loop_, &r->child);
    ev_timer_init(&r->timer, on_timeout, ev.timeout, 0.);
    r->timer.data = r.get();
    ev_timer_start(loop_, &r->timer);
    running_[key] = std::move(r);
}

void
NotifyRunner::on_child(struct ev_loop* loop, ev_child* w, int) noexcept
{
    auto* r = static_cast<Running*>(w->data);
    NotifyRunner* self = r->owner;
    ev_child_stop(loop, &r->child);
    ev_timer_stop(loop, &r->timer);
    int st = w->rstatus;
    // Whatever the script left behind in its session goes with it.
    kill(-r->pid, SIGKILL);
    // A script killed at its timeout was logged then.
    if (!r->killed && WIFEXITED(st) && WEXITSTATUS(st) != 0)
        log_warn("%s: notify script exited with status %d", r->key.c_str(),
                 WEXITSTATUS(st));
    else if (!r->killed && WIFSIGNALED(st))
        log_warn("%s: notify script killed by signal %d", r->key.c_str(),
                 WTERMSIG(st));
    std::string key = r->key;
    self->running_.erase(key);  // frees r
    self->start_next(key);
}

void
NotifyRunner::on_timeout(struct ev_loop*, ev_timer* w, int) noexcept
{
    auto* r = static_cast<Running*>(w->data);
    log_warn("%s: notify script still running after %g s; killing it",
             r->key.c_str(), r->ev.timeout);
    r->killed = true;
    kill(-r->pid, SIGKILL);
    kill(r->pid, SIGKILL);
}

}  // namespace sj::hb
