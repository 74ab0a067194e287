#include "heartbeatd/state.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common/control.h"
#include "common/control_server.h"
#include "common/log.h"

namespace sj::hb {

namespace {

double
wall_now() noexcept
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
}

std::string
iso_time(double t)
{
    if (t <= 0)
        return "-";
    time_t s = static_cast<time_t>(t);
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// Better states rank higher; a move up needs `rise` results, down `fall`.
int
rank(Health h) noexcept
{
    switch (h) {
    case Health::kUp: return 2;
    case Health::kLagging: return 1;
    default: return 0;
    }
}

Health
health_of(Outcome o) noexcept
{
    switch (o) {
    case Outcome::kPass: return Health::kUp;
    case Outcome::kLagging: return Health::kLagging;
    case Outcome::kFail: break;
    }
    return Health::kDown;
}

}  // namespace

const char*
health_name(Health h) noexcept
{
    switch (h) {
    case Health::kUnknown: return "unknown";
    case Health::kUp: return "up";
    case Health::kDown: return "down";
    case Health::kLagging: return "lagging";
    case Health::kMaintenance: return "maintenance";
    }
    return "?";
}

HeartbeatState::HeartbeatState(struct ev_loop* loop) noexcept
    : loop_(loop), notify_(loop)
{
    ev_io_init(&checker_io_, on_checker, -1, EV_READ);
    checker_io_.data = this;
}

HeartbeatState::~HeartbeatState()
{
    ev_io_stop(loop_, &checker_io_);
}

bool
HeartbeatState::configure(std::shared_ptr<const Config> config, unsigned,
                          std::string* err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
                   sv) < 0) {
        *err = std::string("socketpair: ") + std::strerror(errno);
        return false;
    }
    // The retiring checker keeps its own copy of the old pair; what it
    // still sends is of a configuration that is going away.
    ev_io_stop(loop_, &checker_io_);
    parent_fd_.reset(sv[0]);
    child_fd_.reset(sv[1]);
    ev_io_set(&checker_io_, parent_fd_.get(), EV_READ);
    ev_io_start(loop_, &checker_io_);

    // The node table: states carry over for nodes that keep their check.
    std::map<std::string, std::unique_ptr<NodeState>> old;
    for (auto& n : nodes_)
        old[n->pool + "/" + n->node] = std::move(n);
    nodes_.clear();
    index_.clear();
    for (const auto& [name, pool] : config->pools) {
        if (pool.check.type.empty())
            continue;
        for (const NodeConfig& nc : pool.nodes) {
            std::string key = name + "/" + nc.name;
            auto it = old.find(key);
            std::unique_ptr<NodeState> n;
            if (it != old.end() && it->second->type == pool.check.type &&
                it->second->address == nc.address_text)
                n = std::move(it->second);
            else
                n = std::make_unique<NodeState>();
            n->pool = name;
            n->node = nc.name;
            n->address = nc.address_text;
            n->type = pool.check.type;
            n->rise = pool.check.rise;
            n->fall = pool.check.fall;
            n->notify_script = pool.check.notify_script.empty()
                                   ? config->heartbeatd.notify_script
                                   : pool.check.notify_script;
            index_[key] = n.get();
            nodes_.push_back(std::move(n));
        }
    }

    balancerd_pools_.clear();
    cached_pools_.clear();
    origin_pool_.clear();
    if (config->balancerd.present) {
        balancerd_pools_.insert(config->balancerd.pool);
        for (const TcpListenConfig& t : config->balancerd.tcp)
            balancerd_pools_.insert(t.pool);
        origin_pool_ = config->balancerd.pool;
    }
    if (config->cached.present && !config->cached.shared_tier.empty())
        cached_pools_.insert(config->cached.shared_tier);

    // Links: one per daemon named in heartbeatd.notify. A changed run_dir
    // takes effect at restart (as for the control socket), so an existing
    // link is kept as it is.
    std::set<std::string> want(config->heartbeatd.notify.begin(),
                               config->heartbeatd.notify.end());
    for (auto it = links_.begin(); it != links_.end();) {
        if (want.count(it->first) == 0)
            it = links_.erase(it);
        else
            ++it;
    }
    config_ = std::move(config);
    for (const std::string& d : want) {
        if (links_.count(d) != 0)
            continue;
        auto link = std::make_unique<ControlLink>(
            loop_, d, control_socket_path(*config_, d),
            [this, d] { return snapshot(d); });
        link->start();
        links_[d] = std::move(link);
    }
    update_origin();
    return true;
}

void
HeartbeatState::after_fork() noexcept
{
    ev_io_stop(loop_, &checker_io_);
    parent_fd_.reset();
    for (auto& [d, link] : links_)
        link->abandon();
    notify_.abandon();
}

NodeState*
HeartbeatState::find(const std::string& pool_node) noexcept
{
    auto it = index_.find(pool_node);
    return it == index_.end() ? nullptr : it->second;
}

void
HeartbeatState::on_checker(struct ev_loop*, ev_io* w, int) noexcept
{
    static_cast<HeartbeatState*>(w->data)->receive();
}

void
HeartbeatState::receive() noexcept
{
    for (int i = 0; i < 256; ++i) {
        char buf[kMaxMessage + 1];
        ssize_t n = recv(parent_fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_error("checker socket: %s", std::strerror(errno));
            return;
        }
        Message m;
        if (!decode(std::string_view(buf, static_cast<size_t>(n)), &m)) {
            log_error("checker sent a malformed message (%zd bytes)", n);
            continue;
        }
        apply(m);
    }
}

void
HeartbeatState::send_checker(MsgType type, const NodeState& n) noexcept
{
    Message m;
    m.type = type;
    m.pool = n.pool;
    m.node = n.node;
    std::string wire = encode(m);
    if (send(parent_fd_.get(), wire.data(), wire.size(),
             MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_warn("%s/%s: cannot reach the checker: %s", n.pool.c_str(),
                 n.node.c_str(), std::strerror(errno));
}

void
HeartbeatState::apply(const Message& m) noexcept
{
    if (m.type == MsgType::kHello) {
        // A (re)started checker knows nothing of maintenance.
        for (auto& n : nodes_)
            if (n->health == Health::kMaintenance)
                send_checker(MsgType::kPause, *n);
        return;
    }
    if (m.type != MsgType::kResult)
        return;
    NodeState* n = find(m.pool + "/" + m.node);
    if (n == nullptr || n->health == Health::kMaintenance)
        return;
    n->has_result = true;
    n->last = m.outcome;
    n->last_reason = m.reason;
    n->last_latency = m.latency_us / 1e6;
    n->last_time = wall_now();
    ++n->checks;
    if (n->streak > 0 && n->streak_kind == m.outcome) {
        ++n->streak;
    } else {
        n->streak_kind = m.outcome;
        n->streak = 1;
    }
    if (m.outcome == Outcome::kPass) {
        ++n->passes;
        n->failures = 0;
    } else {
        ++n->failures;
        n->passes = 0;
    }
    log_debug("%s/%s: check %s in %.1f ms: %s", n->pool.c_str(),
              n->node.c_str(), outcome_name(m.outcome), n->last_latency * 1e3,
              m.reason.c_str());
    Health to = health_of(m.outcome);
    if (n->health == to)
        return;
    if (n->health == Health::kUnknown) {
        change(*n, to, m.reason);
        return;
    }
    int need = rank(to) > rank(n->health) ? n->rise : n->fall;
    if (n->streak < need)
        return;
    const char* what = m.outcome == Outcome::kPass   ? "passed"
                       : m.outcome == Outcome::kFail ? "failed"
                                                     : "lagging";
    change(*n, to,
           std::string("after ") + std::to_string(n->streak) + " " + what +
               " check" + (n->streak == 1 ? "" : "s") + ": " + m.reason);
}

void
HeartbeatState::change(NodeState& n, Health to,
                       const std::string& reason) noexcept
{
    Health from = n.health;
    n.health = to;
    n.since = wall_now();
    n.reason = reason;
    if (from == Health::kUnknown)
        log_notice("%s/%s: %s (first check: %s)", n.pool.c_str(),
                   n.node.c_str(), health_name(to), reason.c_str());
    else
        log_notice("%s/%s: %s %s", n.pool.c_str(), n.node.c_str(),
                   health_name(to), reason.c_str());
    if (!n.notify_script.empty()) {
        NotifyEvent ev;
        ev.script = n.notify_script;
        ev.timeout = config_->heartbeatd.notify_timeout;
        ev.pool = n.pool;
        ev.node = n.node;
        ev.address = n.address;
        ev.old_state = health_name(from);
        ev.new_state = health_name(to);
        ev.reason = reason;
        notify_.run(std::move(ev));
    }
    if (to != Health::kUnknown) {
        std::string line = node_line(n);
        for (auto& [d, link] : links_)
            if (wants(d, n))
                link->send(line);
    }
    if (n.pool == origin_pool_)
        update_origin();
}

void
HeartbeatState::update_origin() noexcept
{
    if (origin_pool_.empty())
        return;
    bool any_up = false, all_known = true, any = false;
    for (const auto& n : nodes_) {
        if (n->pool != origin_pool_)
            continue;
        any = true;
        any_up |= n->health == Health::kUp;
        all_known &= n->health != Health::kUnknown;
    }
    Health o = any_up               ? Health::kUp
               : (all_known && any) ? Health::kDown
                                    : Health::kUnknown;
    if (o == Health::kUnknown || o == origin_)
        return;
    origin_ = o;
    if (o == Health::kUp)
        log_notice("origin up: a node of pool %s is up", origin_pool_.c_str());
    else
        log_notice("origin down: no node of pool %s is up",
                   origin_pool_.c_str());
    auto it = links_.find("cached");
    if (it != links_.end())
        it->second->send(o == Health::kUp ? "origin up" : "origin down");
}

std::string
HeartbeatState::node_line(const NodeState& n) const
{
    // Routing knows two states; why it is down travels in the reason.
    bool up = n.health == Health::kUp;
    std::string reason = n.reason;
    if (n.health == Health::kLagging)
        reason = "lagging: " + reason;
    else if (n.health == Health::kMaintenance)
        reason = "maintenance";
    return "node health " + n.pool + "/" + n.node + (up ? " up " : " down ") +
           control_quote(reason);
}

bool
HeartbeatState::wants(const std::string& daemon, const NodeState& n) const
{
    if (daemon == "balancerd")
        return balancerd_pools_.count(n.pool) != 0;
    if (daemon == "cached")
        return cached_pools_.count(n.pool) != 0;
    return false;
}

std::vector<std::string>
HeartbeatState::snapshot(const std::string& daemon) const
{
    std::vector<std::string> lines;
    for (const auto& n : nodes_)
        if (n->health != Health::kUnknown && wants(daemon, *n))
            lines.push_back(node_line(*n));
    if (daemon == "cached" && origin_ != Health::kUnknown)
        lines.push_back(origin_ == Health::kUp ? "origin up" : "origin down");
    return lines;
}

std::string
HeartbeatState::show_checks() const
{
    std::string s;
    for (const auto& n : nodes_) {
        char lat[32] = "-";
        if (n->has_result)
            std::snprintf(lat, sizeof lat, "%.1fms", n->last_latency * 1e3);
        s += n->pool + "/" + n->node + " " + n->type + " " +
             health_name(n->health) + " since=" + iso_time(n->since) +
             " last=" + (n->has_result ? outcome_name(n->last) : "-") +
             " latency=" + lat + " passes=" + std::to_string(n->passes) +
             " failures=" + std::to_string(n->failures) +
             " checks=" + std::to_string(n->checks) + " result=" +
             control_quote(n->has_result ? n->last_reason : "") + "\n";
    }
    return s;
}

std::string
HeartbeatState::show_nodes() const
{
    std::string s;
    for (const auto& n : nodes_)
        s += n->pool + "/" + n->node + " " + n->address + " " +
             health_name(n->health) + " " + control_quote(n->reason) + "\n";
    return s;
}

std::string
HeartbeatState::status() const
{
    std::map<std::string, int> counts;
    for (const auto& n : nodes_)
        ++counts[health_name(n->health)];
    std::string s = "nodes:";
    for (const char* h : {"up", "down", "lagging", "maintenance", "unknown"})
        s += " " + std::to_string(counts[h]) + " " + h;
    s += "\n";
    if (!origin_pool_.empty())
        s += std::string("origin: ") + health_name(origin_) + "\n";
    for (const auto& [d, link] : links_)
        s += "notify " + d + ": " +
             (link->connected() ? "connected" : "disconnected") + "\n";
    for (const auto& n : nodes_)
        s += "node " + n->pool + "/" + n->node + ": " + health_name(n->health) +
             "\n";
    return s;
}

void
HeartbeatState::add_commands(ControlServer& control)
{
    using Args = std::vector<std::string>;
    control.add("show checks", false,
                [this](const Args& a, const ControlPeer&) {
                    if (!a.empty())
                        return ControlReply{400, "usage: show checks\n"};
                    return ControlReply{200, show_checks()};
                });
    control.add("show nodes", false, [this](const Args& a, const ControlPeer&) {
        if (!a.empty())
            return ControlReply{400, "usage: show nodes\n"};
        return ControlReply{200, show_nodes()};
    });
    control.add("check now", true, [this](const Args& a, const ControlPeer&) {
        if (a.size() != 1)
            return ControlReply{400, "usage: check now POOL/NODE\n"};
        NodeState* n = find(a[0]);
        if (n == nullptr)
            return ControlReply{404, "no checked node " + a[0] + "\n"};
        if (n->health == Health::kMaintenance)
            return ControlReply{400, a[0] + " is in maintenance\n"};
        send_checker(MsgType::kCheckNow, *n);
        return ControlReply{200, "checking " + a[0] + "\n"};
    });
    control.add(
        "node maintenance", true, [this](const Args& a, const ControlPeer& p) {
            if (a.size() != 2 || (a[1] != "on" && a[1] != "off"))
                return ControlReply{
                    400, "usage: node maintenance POOL/NODE on|off\n"};
            NodeState* n = find(a[0]);
            if (n == nullptr)
                return ControlReply{404, "no checked node " + a[0] + "\n"};
            bool on = a[1] == "on";
            if (on == (n->health == Health::kMaintenance))
                return ControlReply{200, a[0] + " maintenance already " + a[1] +
                                             "\n"};
            log_info("%s: maintenance %s asked on the control socket (uid %d)",
                     a[0].c_str(), a[1].c_str(), static_cast<int>(p.uid));
            if (on) {
                send_checker(MsgType::kPause, *n);
                change(*n, Health::kMaintenance, "maintenance on");
            } else {
                n->streak = n->passes = n->failures = 0;
                change(*n, Health::kUnknown, "maintenance off");
                send_checker(MsgType::kResume, *n);
            }
            return ControlReply{200, a[0] + " maintenance " + a[1] + "\n"};
        });
}

std::unique_ptr<DaemonState>
make_state(struct ev_loop* loop)
{
    return std::make_unique<HeartbeatState>(loop);
}

}  // namespace sj::hb
