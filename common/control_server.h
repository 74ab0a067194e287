#pragma once
// A control socket server on a libev loop. Listens on a Unix socket (mode
// 0660, owned by the daemon's user and group), reads one command per line,
// runs the matching handler and writes the reply framed as in control.h.
//
// Who may do what: SO_PEERCRED gives the client's uid and gids. Root, the
// daemon's own uid, the socket's owner (global.user) and members of the
// admin group may run every command; anyone else who can open the socket
// (its group) may run only commands registered as read-only. A refused
// command gets 403 and a log line.

#include <ev.h>
#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/control.h"
#include "common/unique_fd.h"

namespace sj {

struct ControlPeer {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    bool admin = false;  // may run mutating commands
};

// args[0..n) are the words after the command's own words.
using ControlHandler = std::function<ControlReply(
    const std::vector<std::string>& args, const ControlPeer& peer)>;

class ControlServer {
public:
    // `admin_gid` < 0: no admin group.
    ControlServer(struct ev_loop* loop, std::string path) noexcept;
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Registers `command` (one or more words, e.g. "show config"). Lookup
    // picks the longest registered command that prefixes the request's
    // words. `mutating` commands need an admin peer.
    void add(const std::string& command, bool mutating, ControlHandler h);

    // Binds the socket (replacing a stale one left by a dead process), sets
    // mode 0660 and ownership `uid`:`gid` (-1 leaves it), starts accepting.
    // Returns false with *err set if it cannot.
    bool open(uid_t uid, gid_t gid, long admin_gid, std::string* err);

    // Stops accepting, closes client connections and unlinks the socket.
    void close() noexcept;

    // Closes our descriptors without unlinking the socket: for a forked
    // child, whose parent goes on serving it.
    void abandon() noexcept;

    const std::string& path() const noexcept { return path_; }

    // The body of the built-in "help": every command, one per line.
    std::string help() const;

private:
    // One client connection; defined in control_server.cc. Owned by conns_.
    struct Conn;
    struct Command {
        std::vector<std::string> words;
        bool mutating;
        ControlHandler handler;
    };
    static void on_accept(struct ev_loop*, ev_io* w, int) noexcept;
    static void on_accept_retry(struct ev_loop*, ev_timer* w, int) noexcept;
    void accept_clients() noexcept;
    // Stops `c`'s watchers, closes its socket and frees it, unless its
    // handler is running (busy_), in which case serve() frees it afterwards.
    void drop(Conn* c) noexcept;
    ControlReply dispatch(const std::string& line, const ControlPeer& peer);
    bool is_admin(uid_t uid, gid_t gid) const noexcept;

    struct ev_loop* loop_;
    std::string path_;
    UniqueFd fd_;
    ev_io accept_watcher_{};
    // Restarts accepting after EMFILE/ENFILE, which would otherwise make the
    // level-triggered accept watcher spin.
    ev_timer accept_retry_{};
    long admin_gid_ = -1;
    uid_t self_uid_ = 0;
    // The socket's owner (global.user): the suite's own processes, such as
    // heartbeatd's checker, may change things too.
    uid_t owner_uid_ = 0;
    // The socket file we created, so close() never unlinks a successor's.
    dev_t sock_dev_ = 0;
    ino_t sock_ino_ = 0;
    bool bound_ = false;
    // The connection whose handler is running, if any: a handler may call
    // close(), which must not free the Conn under its caller's feet.
    Conn* busy_ = nullptr;
    std::vector<Command> commands_;
    std::map<Conn*, std::unique_ptr<Conn>> conns_;
    friend struct Conn;
};

}  // namespace sj
