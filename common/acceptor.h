#pragma once
// The listening sockets of one worker process.
//
// The workers of a generation share each listening socket. A worker takes
// a bounded batch of connections per wake-up, so that a burst of new
// clients does not starve the ones it already serves. At its connection
// limit it stops watching the sockets, leaving new clients in the kernel's
// backlog or to another worker, and starts again when its owner reports
// that connections closed. (Watching a readable listening socket it does
// not accept from would wake its loop at once, every time: a busy loop.)
// Out of file descriptors or kernel memory, it stops watching for 100 ms
// for the same reason, with one log line per such spell. With an
// AcceptGate (common/accept_gate.h) it leaves new connections to the
// worker the gate names, stopping for AcceptGate::kDefer at a time.

#include <ev.h>
#include <sys/socket.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace sj {

class AcceptGate;

class Acceptor {
public:
    // Takes a connection accepted on listener `index` (in the order of
    // add()); returns how many connections the owner now holds.
    using Handler = size_t (*)(void* owner, size_t index, UniqueFd fd,
                               const sockaddr_storage& peer,
                               socklen_t len) noexcept;

    Acceptor(struct ev_loop* loop, Handler handler, void* owner) noexcept;
    ~Acceptor();
    Acceptor(const Acceptor&) = delete;
    Acceptor& operator=(const Acceptor&) = delete;

    // Watches listening socket `fd` (not owned until close_all()).
    void add(int fd);
    // The most connections the owner takes; `name` is the setting, for
    // the log lines when accepting stops and starts again, which begin
    // with `who` ("worker PID" unless set).
    void set_limit(size_t limit, std::string name, std::string who = "");
    // The owner holds `n` connections now (some closed): accepting starts
    // again below the limit.
    void update(size_t n) noexcept;
    // Consults `gate` (not owned; outlives this) before accepting.
    void set_gate(AcceptGate* gate) noexcept;
    // Stops watching the listening sockets, for good; close_all() also
    // closes them.
    void stop() noexcept;
    void close_all() noexcept;
    bool paused() const noexcept { return paused_; }
    bool starved() const noexcept { return starved_; }

    static constexpr int kBatch = 64;
    static constexpr double kRetry = 0.1;

private:
    struct Listener {
        Acceptor* acceptor = nullptr;
        int fd = -1;
        size_t index = 0;
        ev_io io{};
    };
    static void on_readable(struct ev_loop*, ev_io* w, int) noexcept;
    static void on_retry(struct ev_loop*, ev_timer* w, int) noexcept;
    static void on_deferred(struct ev_loop*, ev_timer* w, int) noexcept;
    bool may_watch() const noexcept;
    void publish() noexcept;  // whether it accepts, to the gate
    void accept_from(Listener* l) noexcept;
    void watch(bool on) noexcept;
    const std::string& who() noexcept;

    struct ev_loop* loop_;
    Handler handler_;
    void* owner_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    size_t limit_ = static_cast<size_t>(-1);
    std::string limit_name_;
    std::string who_;
    bool paused_ = false;   // at the limit
    bool starved_ = false;  // out of descriptors: retry_ runs
    bool closed_ = false;
    bool deferring_ = false;  // left a connection to another: defer_ runs
    AcceptGate* gate_ = nullptr;
    ev_timer retry_{};
    ev_timer defer_{};
};

}  // namespace sj
