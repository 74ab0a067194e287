#pragma once
// The client side of an HTTP/1.1 daemon in one worker: accepts connections
// on the listeners the parent bound, reads requests with the strict parser
// (common/http_parser.h), answers each through respond(), in order, and
// enforces the timeouts a front end needs (a client that sends its header
// too slowly gets 408; an idle keep-alive connection is closed).
//
// Bad input is answered, never guessed at: a request the parser refuses
// gets the status http_error_status() names, "Connection: close", and a log
// line naming the client and the reason.
//
// A subclass supplies respond(); cached and balancerd grow their own
// forwarding on top of this in their own folders.

#include <ev.h>

#include <map>
#include <memory>
#include <string>

#include "common/daemon_main.h"
#include "common/http_parser.h"

namespace sj {

struct HttpFrontOptions {
    HttpLimits limits;
    double header_timeout = 10.0;  // whole request head, from its 1st byte
    double idle_timeout = 60.0;    // keep-alive wait for the next request
    size_t max_connections = 10000;
};

// What respond() produces for one request.
struct HttpAnswer {
    int status = 200;
    std::string content_type = "text/plain";
    std::string body;
    bool close = false;  // close the connection after this response
};

class HttpFront : public Worker {
public:
    // Starts accepting on every listener in `ctx`. `name` prefixes log
    // lines.
    HttpFront(WorkerContext& ctx, HttpFrontOptions opts);
    ~HttpFront() override;

    void shutdown(std::function<void()> idle) noexcept override;

    size_t connections() const noexcept { return conns_.size(); }

protected:
    // Answers one well-formed request. `peer` is the client's address as
    // text. Must not throw.
    virtual HttpAnswer respond(const HttpMessage& request,
                               const std::string& peer) noexcept = 0;

private:
    struct Conn;
    struct Listener {
        HttpFront* front = nullptr;
        int fd = -1;
        ev_io io{};
    };
    static void on_accept(struct ev_loop*, ev_io* w, int) noexcept;
    void accept_from(Listener* l) noexcept;
    void close_conn(Conn* c) noexcept;
    void maybe_idle() noexcept;
    friend struct Conn;

    struct ev_loop* loop_;
    HttpFrontOptions opts_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::map<Conn*, std::unique_ptr<Conn>> conns_;
    bool shutting_down_ = false;
    std::function<void()> on_idle_;
};

// A front end that answers every well-formed request 503, saying that
// `daemon` does not forward requests in this release: what cached and
// balancerd serve until their forwarding lands.
std::unique_ptr<Worker> make_unrouted_front(
    WorkerContext& ctx, const HttpLimits& limits, const char* daemon);

}  // namespace sj
