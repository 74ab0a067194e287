#pragma once
// What balancerd's TCP (layer 4) mode needs from the node state: a node to
// relay a new connection to, and a way to notice that the pool's writer
// changed so connections to the old writer can be closed (issue: TCP mode).
// Implemented over the shared node table by the worker; TcpProxy
// (tcp_proxy.h) only talks to this interface, so it can be tested alone.

#include <cstdint>
#include <string>

#include "common/address.h"

namespace sj {

struct TcpRoute {
    int node = -1;     // index in the router's node table; -1: none
    Address address;   // where to connect
    std::string name;  // "pool/node", for logs
};

class TcpRouter {
public:
    virtual ~TcpRouter() = default;

    // A node of `pool` for a new client connection from `client` (the peer
    // address as text, for source hashing): by role when `route` is
    // "writer" (the node currently marked writer, if it is up and enabled),
    // else by the pool's balancing. `exclude` is a node that just failed
    // to connect (-1: none), so a retry goes elsewhere. Returns node -1
    // when no node can take it.
    virtual TcpRoute pick(const std::string& pool, const std::string& route,
                          const std::string& client, int exclude) = 0;

    // The connection to `node` was established (true) or failed (false):
    // feeds passive health and the node's counters.
    virtual void connect_result(int node, bool ok) = 0;

    // Counts a relayed connection against the node while it lasts.
    virtual void opened(int node) = 0;
    virtual void closed(int node, uint64_t bytes_in, uint64_t bytes_out) = 0;

    // A number that changes whenever the writer of `pool` changes (or the
    // node stops being usable); connections made under an older epoch to a
    // node that is no longer the writer must be closed.
    virtual uint64_t writer_epoch(const std::string& pool) = 0;
};

}  // namespace sj
