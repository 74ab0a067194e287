// balancerd's control commands and the Prometheus metrics listener, both
// served by the parent straight from the shared node table.

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "balancerd/state.h"
#include "common/buffer.h"
#include "common/control_server.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

namespace {

bool
parse_weight(const std::string& s, int* out)
{
    if (s.empty() || s.size() > 4 ||
        s.find_first_not_of("0123456789") != std::string::npos)
        return false;
    int v = std::stoi(s);
    if (v > 1000)
        return false;
    *out = v;
    return true;
}

std::string
join_words(const std::vector<std::string>& w, size_t from)
{
    std::string s;
    for (size_t i = from; i < w.size(); ++i) {
        if (!s.empty())
            s += ' ';
        s += w[i];
    }
    return s;
}

}  // namespace

void
BalancerState::add_commands(ControlServer& control)
{
    using Args = std::vector<std::string>;
    control.add("show pools", false, [this](const Args& a, const ControlPeer&) {
        if (!a.empty())
            return ControlReply{400, "usage: show pools\n"};
        return ControlReply{200, show_pools()};
    });
    control.add("show nodes", false, [this](const Args& a, const ControlPeer&) {
        if (!a.empty())
            return ControlReply{400, "usage: show nodes\n"};
        return ControlReply{200, show_nodes()};
    });
    control.add("show stats", false, [this](const Args& a, const ControlPeer&) {
        if (!a.empty())
            return ControlReply{400, "usage: show stats\n"};
        return ControlReply{200, show_stats()};
    });
    control.add("show metrics", false,
                [this](const Args& a, const ControlPeer&) {
                    if (!a.empty())
                        return ControlReply{400, "usage: show metrics\n"};
                    return ControlReply{200, metrics()};
                });
    auto admin = [this](const char* verb, AdminState st) {
        return [this, verb, st](const Args& a, const ControlPeer& p) {
            if (a.size() != 1)
                return ControlReply{400, std::string("usage: node ") + verb +
                                             " POOL/NODE\n"};
            int slot;
            std::string err;
            if (!find_node(a[0], &slot, &err))
                return ControlReply{404, err};
            ShmNode& n = table_.node(slot);
            uint32_t old = n.admin.exchange(static_cast<uint32_t>(st));
            if (old != static_cast<uint32_t>(st)) {
                n.last_change = wall_ms();
                if (st == AdminState::kEnabled)
                    n.up_since = mono_ms();
                if (n.writer)
                    for (int i = 0; i < kMaxPools; ++i)
                        if (table_.pool(i).in_use &&
                            std::strcmp(table_.pool(i).name, n.pool) == 0)
                            table_.bump_epoch(i);
            }
            log_notice("%s: %s (control socket, uid %d)", a[0].c_str(),
                       admin_name(static_cast<uint32_t>(st)),
                       static_cast<int>(p.uid));
            return ControlReply{
                200,
                a[0] + ": " + admin_name(static_cast<uint32_t>(st)) + "\n"};
        };
    };
    control.add("node enable", true, admin("enable", AdminState::kEnabled));
    control.add("node disable", true, admin("disable", AdminState::kDisabled));
    control.add("node drain", true, admin("drain", AdminState::kDrain));
    control.add("node weight", true, [this](const Args& a, const ControlPeer&) {
        int w;
        if (a.size() != 2 || !parse_weight(a[1], &w))
            return ControlReply{400,
                                "usage: node weight POOL/NODE N (0..1000)\n"};
        int slot;
        std::string err;
        if (!find_node(a[0], &slot, &err))
            return ControlReply{404, err};
        ShmNode& n = table_.node(slot);
        int old = n.weight.exchange(w);
        if (old == 0 && w > 0)
            n.up_since = mono_ms();
        log_notice("%s: weight %d -> %d", a[0].c_str(), old, w);
        return ControlReply{200, a[0] + ": weight " + std::to_string(w) + "\n"};
    });
    control.add("node health", true, [this](const Args& a, const ControlPeer&) {
        if (a.size() < 2 || (a[1] != "up" && a[1] != "down"))
            return ControlReply{
                400, "usage: node health POOL/NODE up|down [reason]\n"};
        int slot;
        std::string err;
        if (!find_node(a[0], &slot, &err))
            return ControlReply{404, err};
        bool up = a[1] == "up";
        table_.set_health(slot, up, HealthSource::kHeartbeat, join_words(a, 2));
        return ControlReply{200, a[0] + ": " + a[1] + "\n"};
    });
    control.add("node role", true, [this](const Args& a, const ControlPeer&) {
        if (a.size() != 2 || a[1] != "writer")
            return ControlReply{400, "usage: node role POOL/NODE writer\n"};
        int slot;
        std::string err;
        if (!find_node(a[0], &slot, &err))
            return ControlReply{404, err};
        ShmNode& target = table_.node(slot);
        bool changed = false;
        for (int i = 0; i < kMaxNodes; ++i) {
            ShmNode& n = table_.node(i);
            if (!n.in_use || std::strcmp(n.pool, target.pool) != 0)
                continue;
            uint32_t want = i == slot ? 1 : 0;
            if (n.writer.exchange(want) != want)
                changed = true;
        }
        if (changed) {
            for (int i = 0; i < kMaxPools; ++i)
                if (table_.pool(i).in_use &&
                    std::strcmp(table_.pool(i).name, target.pool) == 0)
                    table_.bump_epoch(i);
            log_notice("%s: now the writer", a[0].c_str());
        }
        return ControlReply{200, a[0] + ": writer\n"};
    });
}

BalancerState::BalancerState(struct ev_loop* loop)
    : loop_(loop), metrics_server_(loop, [this] { return metrics(); })
{}

BalancerState::~BalancerState() = default;

void
BalancerState::after_fork() noexcept
{
    metrics_server_.close();
}

bool
BalancerState::open_metrics(const Config& config, std::string* err)
{
    const std::string& want = config.balancerd.metrics_listen_text;
    std::string e;
    if (!metrics_server_.listen(config.balancerd.metrics_listen, want, &e)) {
        *err = "metrics_listen " + want + ": " + e;
        return false;
    }
    return true;
}

}  // namespace sj
