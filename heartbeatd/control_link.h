#pragma once
// heartbeatd's client of another daemon's control socket (balancerd,
// cached), on the parent's libev loop, never blocking.
//
// States: disconnected (a retry timer armed, with backoff from 0.1 s
// doubling to 2 s), connected. On every connect the link first sends the
// snapshot its owner provides, then each line given to send(), in order,
// one command at a time (the next goes once the reply to the previous one
// came). A line sent while disconnected is dropped: the snapshot sent on
// the next connect carries the state it described. So the daemon sees each
// change once, in order, and the whole truth after each of its restarts.
//
// A daemon that is not running is logged once per outage, not once per
// retry; a reply other than 200 is logged (404, a command the daemon does
// not know yet, once per command) and the link goes on.

#include <ev.h>

#include <deque>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace sj::hb {

class ControlLink {
public:
    using Snapshot = std::function<std::vector<std::string>()>;

    // `daemon` names the peer in logs; `path` is its control socket.
    ControlLink(struct ev_loop* loop, std::string daemon, std::string path,
                Snapshot snapshot) noexcept;
    ~ControlLink();
    ControlLink(const ControlLink&) = delete;
    ControlLink& operator=(const ControlLink&) = delete;

    // Starts connecting (at once).
    void start() noexcept;

    // Queues one command line (no newline) if connected; see above.
    void send(const std::string& line) noexcept;

    // In a forked child: closes the socket without touching the peer.
    void abandon() noexcept;

    const std::string& daemon() const noexcept { return daemon_; }
    bool connected() const noexcept { return connected_; }
    // Commands answered since start.
    unsigned long long answered() const noexcept { return answered_; }

private:
    static void on_io(struct ev_loop*, ev_io* w, int revents) noexcept;
    static void on_timer(struct ev_loop*, ev_timer* w, int) noexcept;
    void connect() noexcept;
    void drop(const std::string& why) noexcept;
    void pump() noexcept;
    void read_replies() noexcept;
    void arm(double after) noexcept;

    struct ev_loop* loop_;
    std::string daemon_;
    std::string path_;
    Snapshot snapshot_;
    UniqueFd fd_;
    ev_io io_{};
    ev_timer timer_{};  // retry while disconnected; reply timeout / ping
    bool connected_ = false;
    bool in_flight_ = false;
    bool warned_ = false;  // the current outage was logged
    double backoff_ = kMinBackoff;
    std::deque<std::string> queue_;
    std::string current_;  // the command awaiting its reply
    std::string out_, in_;
    std::set<std::string> unknown_;  // commands answered 404, logged once
    unsigned long long answered_ = 0;

    static constexpr double kMinBackoff = 0.1;
    static constexpr double kMaxBackoff = 2.0;
    static constexpr double kReplyTimeout = 5.0;
    // The control server closes a client idle for 60 s; a ping keeps the
    // link (and so avoids a needless snapshot) alive.
    static constexpr double kPingInterval = 30.0;
};

}  // namespace sj::hb
