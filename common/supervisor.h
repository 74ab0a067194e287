#pragma once
// The parent's side of parent/children supervision (the nginx master, the
// relayd parent): forks children, respawns one that dies with a backoff,
// replaces a whole generation of children on reload, and stops them all
// gracefully.
//
// States of a child slot: running (pid > 0), waiting to respawn (pid == 0,
// respawn timer armed), retired (its generation was replaced or a stop was
// asked: it got SIGTERM and is not respawned; SIGKILL when its grace ends).
// Invariant: only children of the current generation are ever respawned.

#include <ev.h>
#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/unique_fd.h"

namespace sj {

class Supervisor {
public:
    // Runs in a freshly forked child; its return value is the child's exit
    // status. It never returns into the parent's code: the child _exit()s.
    using ChildMain = std::function<int(int index, unsigned generation)>;

    // `role` names children in logs ("worker", "checker").
    Supervisor(struct ev_loop* loop, std::string role);
    ~Supervisor();
    Supervisor(const Supervisor&) = delete;
    Supervisor& operator=(const Supervisor&) = delete;

    // Runs in every child right after fork(), before ChildMain: the owner
    // closes what the child must not keep (control socket, pid file lock).
    void set_after_fork(std::function<void()> fn)
    {
        after_fork_ = std::move(fn);
    }

    // Runs in the parent each time one of its children has been reaped
    // (before any respawn), with the child's pid: the owner gives back what
    // the child held in shared memory and could not give back itself.
    void set_on_reaped(std::function<void(pid_t)> fn)
    {
        on_reaped_ = std::move(fn);
    }

    // Starts `count` children of generation `gen` running `body`, and retires
    // every child of an older generation: SIGTERM now, SIGKILL after `grace`
    // seconds. Returns false if a fork failed (the children that did start
    // keep running and the rest respawn with backoff).
    bool start_generation(unsigned gen, int count, ChildMain body,
                          double grace);

    // Retires every child (SIGTERM, then SIGKILL after `grace` seconds) and
    // calls `done` once the last one has been reaped.
    void stop_all(double grace, std::function<void()> done);

    // Sends `sig` to every running child (e.g. SIGUSR1 to reopen logs).
    void signal_all(int sig) noexcept;

    // Children of the current generation now running.
    int running() const noexcept;
    int configured() const noexcept { return count_; }
    unsigned generation() const noexcept { return gen_; }

    // The read end of a pipe whose write end only the parent holds: a child
    // sees EOF on it when the parent dies, and exits instead of serving on
    // as an orphan nobody supervises.
    int parent_watch_fd() const noexcept { return watch_rd_.get(); }

private:
    struct Child {
        Supervisor* sup = nullptr;
        int index = 0;
        unsigned gen = 0;
        pid_t pid = 0;
        bool retired = false;
        ev_tstamp started = 0;
        double backoff = kMinBackoff;
        ev_timer respawn{};  // armed while waiting to respawn
        ev_timer kill{};     // armed while a retired child has its grace
    };
    static constexpr double kMinBackoff = 0.1;
    static constexpr double kMaxBackoff = 10.0;
    static constexpr double kQuickDeath = 1.0;   // died this soon: back off
    static constexpr double kStableLife = 10.0;  // lived this long: reset

    bool spawn(Child* c) noexcept;
    void retire(Child* c, double grace) noexcept;
    void reaped(pid_t pid, int status) noexcept;
    void maybe_done() noexcept;
    static void on_child(struct ev_loop*, ev_child* w, int) noexcept;
    static void on_respawn(struct ev_loop*, ev_timer* w, int) noexcept;
    static void on_kill(struct ev_loop*, ev_timer* w, int) noexcept;

    struct ev_loop* loop_;
    std::string role_;
    std::function<void()> after_fork_;
    std::function<void(pid_t)> on_reaped_;
    ChildMain body_;
    unsigned gen_ = 0;
    int count_ = 0;
    bool stopping_ = false;
    std::function<void()> on_stopped_;
    std::map<Child*, std::unique_ptr<Child>> children_;
    ev_child child_watcher_{};
    UniqueFd watch_rd_, watch_wr_;
};

}  // namespace sj
