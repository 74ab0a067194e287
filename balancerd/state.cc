#include "balancerd/state.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <new>

#include "common/check.h"
#include "common/clock.h"
#include "common/control_server.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

namespace {

constexpr uint64_t kMagic = 0x736a62616c616e32ull;  // "sjbalan2"

void
copy_text(char* dst, size_t cap, const std::string& s) noexcept
{
    size_t n = std::min(cap - 1, s.size());
    std::memcpy(dst, s.data(), n);
    dst[n] = '\0';
}

uint64_t
ld(const std::atomic<uint64_t>& a) noexcept
{
    return a.load(std::memory_order_relaxed);
}

std::string
fmt_time(int64_t ms)
{
    if (ms <= 0)
        return "-";
    time_t t = static_cast<time_t>(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// The response-time quantile `q` from a node's histogram, as the upper
// bound of the bucket it falls in ("-" without data).
std::string
quantile(const ShmNode& n, double q)
{
    uint64_t total = 0;
    for (const auto& b : n.hist)
        total += ld(b);
    if (total == 0)
        return "-";
    uint64_t want = static_cast<uint64_t>(q * static_cast<double>(total));
    uint64_t seen = 0;
    for (int i = 0; i < kHistBuckets; ++i) {
        seen += ld(n.hist[i]);
        if (seen > want || seen == total) {
            if (i == kHistBuckets - 1)
                return ">5000ms";
            char buf[32];
            std::snprintf(buf, sizeof buf, "<=%gms", kHistBoundsMs[i]);
            return buf;
        }
    }
    return "-";
}

}  // namespace

int64_t
mono_ms() noexcept
{
    return monotonic_ms();
}

int64_t
wall_ms() noexcept
{
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

const char*
admin_name(uint32_t a) noexcept
{
    switch (static_cast<AdminState>(a)) {
    case AdminState::kEnabled: return "enabled";
    case AdminState::kDrain: return "drain";
    case AdminState::kDisabled: return "disabled";
    }
    return "?";
}

namespace {
const char*
source_name(uint32_t s) noexcept
{
    switch (static_cast<HealthSource>(s)) {
    case HealthSource::kNone: return "-";
    case HealthSource::kPassive: return "passive";
    case HealthSource::kHeartbeat: return "heartbeat";
    }
    return "?";
}
}  // namespace

std::string
format_columns(const std::vector<std::vector<std::string>>& rows)
{
    std::vector<size_t> width;
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size(); ++i) {
            if (width.size() <= i)
                width.push_back(0);
            width[i] = std::max(width[i], r[i].size());
        }
    std::string out;
    for (const auto& r : rows) {
        std::string line;
        for (size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size())
                line.append(width[i] - r[i].size() + 2, ' ');
        }
        out += line + "\n";
    }
    return out;
}

// ---------------------------------------------------------------- table

bool
NodeTable::usable(const ShmNode& n, int64_t now) noexcept
{
    if (n.admin.load(std::memory_order_relaxed) !=
        static_cast<uint32_t>(AdminState::kEnabled))
        return false;
    if (n.up.load(std::memory_order_relaxed))
        return true;
    return n.source.load(std::memory_order_relaxed) ==
               static_cast<uint32_t>(HealthSource::kPassive) &&
           now >= n.down_until.load(std::memory_order_relaxed);
}

namespace {

// Subtracts up to `k` from a count, never below zero.
void
sub_floor(std::atomic<uint32_t>& a, uint32_t k) noexcept
{
    uint32_t cur = a.load(std::memory_order_relaxed);
    while (cur > 0 && !a.compare_exchange_weak(cur, cur - std::min(cur, k),
                                               std::memory_order_acq_rel)) {
    }
}

}  // namespace

bool
NodeTable::join(int32_t pid) noexcept
{
    for (ShmWorker& w : t_->workers) {
        int32_t free = 0;
        if (w.pid.compare_exchange_strong(free, pid,
                                          std::memory_order_acq_rel)) {
            self_ = &w;
            return true;
        }
    }
    return false;
}

bool
NodeTable::acquire(int slot) noexcept
{
    ShmNode& n = node(slot);
    int32_t max = n.maxconn.load(std::memory_order_relaxed);
    uint32_t cur = n.active.load(std::memory_order_relaxed);
    for (;;) {
        if (max > 0 && cur >= static_cast<uint32_t>(max))
            return false;
        if (n.active.compare_exchange_weak(cur, cur + 1,
                                           std::memory_order_acq_rel))
            break;
    }
    if (self_ != nullptr)
        self_->active[slot].fetch_add(1, std::memory_order_relaxed);
    return true;
}

void
NodeTable::hold(int slot) noexcept
{
    node(slot).active.fetch_add(1, std::memory_order_acq_rel);
    if (self_ != nullptr)
        self_->active[slot].fetch_add(1, std::memory_order_relaxed);
}

void
NodeTable::release(int slot) noexcept
{
    sub_floor(node(slot).active, 1);
    if (self_ != nullptr)
        sub_floor(self_->active[slot], 1);
}

void
NodeTable::queue_add(int pool_slot, int delta) noexcept
{
    if (delta > 0) {
        pool(pool_slot).queued.fetch_add(1, std::memory_order_relaxed);
        if (self_ != nullptr)
            self_->queued[pool_slot].fetch_add(1, std::memory_order_relaxed);
    } else {
        sub_floor(pool(pool_slot).queued, 1);
        if (self_ != nullptr)
            sub_floor(self_->queued[pool_slot], 1);
    }
}

uint64_t
NodeTable::take_ticket(int pool_slot) noexcept
{
    return pool(pool_slot).next_ticket.fetch_add(1, std::memory_order_relaxed) +
           1;
}

void
NodeTable::publish_oldest(int pool_slot, uint64_t ticket) noexcept
{
    if (self_ != nullptr)
        self_->oldest[pool_slot].store(ticket, std::memory_order_release);
}

uint64_t
NodeTable::oldest_elsewhere(int pool_slot, int* worker) const noexcept
{
    uint64_t best = 0;
    for (int i = 0; i < kMaxWorkerSlots; ++i) {
        const ShmWorker& w = t_->workers[i];
        if (&w == self_ || w.pid.load(std::memory_order_relaxed) == 0)
            continue;
        uint64_t k = w.oldest[pool_slot].load(std::memory_order_acquire);
        if (k != 0 && (best == 0 || k < best)) {
            best = k;
            *worker = i;
        }
    }
    return best;
}

int
NodeTable::worker_index() const noexcept
{
    return self_ == nullptr ? -1 : static_cast<int>(self_ - t_->workers);
}

std::pair<uint32_t, uint32_t>
NodeTable::release_worker(int32_t pid) noexcept
{
    uint32_t active = 0, queued = 0;
    for (ShmWorker& w : t_->workers) {
        if (pid <= 0 || w.pid.load(std::memory_order_acquire) != pid)
            continue;
        for (int i = 0; i < kMaxNodes; ++i)
            if (uint32_t k = w.active[i].exchange(0)) {
                sub_floor(node(i).active, k);
                active += k;
            }
        for (int i = 0; i < kMaxPools; ++i)
            if (uint32_t k = w.queued[i].exchange(0)) {
                sub_floor(pool(i).queued, k);
                queued += k;
            }
        for (auto& o : w.oldest)
            o.store(0, std::memory_order_relaxed);
        w.pid.store(0, std::memory_order_release);
    }
    return {active, queued};
}

void
NodeTable::set_reason(ShmNode& n, const std::string& r) noexcept
{
    ShmLock lock(&t_->mutex);
    copy_text(n.reason, sizeof n.reason, r);
}

std::string
NodeTable::reason(int slot) const
{
    ShmLock lock(&t_->mutex);
    return t_->nodes[slot].reason;
}

void
NodeTable::bump_epoch(int pool_slot) noexcept
{
    if (pool_slot >= 0)
        t_->pools[pool_slot].writer_epoch.fetch_add(1);
}

namespace {
int
pool_slot_of(ShmTable* t, const ShmNode& n) noexcept
{
    for (int i = 0; i < kMaxPools; ++i)
        if (t->pools[i].in_use && std::strcmp(t->pools[i].name, n.pool) == 0)
            return i;
    return -1;
}
}  // namespace

void
NodeTable::passive_failure(int slot, int fall, double hold,
                           const char* why) noexcept
{
    ShmNode& n = t_->nodes[slot];
    uint32_t f = n.fails.fetch_add(1) + 1;
    if (fall <= 0 || f < static_cast<uint32_t>(fall))
        return;
    int64_t now = mono_ms();
    n.down_until.store(now + static_cast<int64_t>(hold * 1000));
    bool heartbeat_down =
        !n.up && n.source == static_cast<uint32_t>(HealthSource::kHeartbeat);
    if (heartbeat_down)
        return;
    bool was_up = n.up.exchange(0) != 0;
    n.source.store(static_cast<uint32_t>(HealthSource::kPassive));
    if (was_up) {
        n.last_change.store(wall_ms());
        char r[96];
        std::snprintf(r, sizeof r, "%u consecutive failures: %s", f, why);
        set_reason(n, r);
        log_warn(
            "%s/%s: marked down for %gs after %u consecutive failures "
            "(%s)",
            n.pool, n.name, hold, f, why);
        if (n.writer)
            bump_epoch(pool_slot_of(t_, n));
    }
}

void
NodeTable::passive_success(int slot) noexcept
{
    ShmNode& n = t_->nodes[slot];
    if (n.fails.load(std::memory_order_relaxed) != 0)
        n.fails.store(0, std::memory_order_relaxed);
    if (n.up.load(std::memory_order_relaxed))
        return;
    if (n.source != static_cast<uint32_t>(HealthSource::kPassive))
        return;
    if (n.up.exchange(1) == 0) {
        n.up_since.store(mono_ms());
        n.last_change.store(wall_ms());
        set_reason(n, "traffic succeeded");
        log_notice("%s/%s: up again (traffic succeeded)", n.pool, n.name);
    }
}

void
NodeTable::set_health(int slot, bool up, HealthSource src,
                      const std::string& reason) noexcept
{
    ShmNode& n = t_->nodes[slot];
    bool was = n.up.exchange(up ? 1 : 0) != 0;
    n.source.store(static_cast<uint32_t>(src));
    n.fails.store(0);
    set_reason(n, reason);
    if (was != up) {
        n.last_change.store(wall_ms());
        if (up)
            n.up_since.store(mono_ms());
        log_notice("%s/%s: marked %s by heartbeat%s%s", n.pool, n.name,
                   up ? "up" : "down", reason.empty() ? "" : ": ",
                   reason.c_str());
        if (n.writer)
            bump_epoch(pool_slot_of(t_, n));
    }
}

// ---------------------------------------------------------------- parent

std::shared_ptr<const Layout>
BalancerState::layout(unsigned generation) const
{
    auto it = layouts_.find(generation);
    return it == layouts_.end() ? nullptr : it->second;
}

namespace {

// A slot for `pool`/`name`: the one holding it already, else a never-used
// one, else a retired one with nothing in flight. -1 if the table is full.
int
node_slot(ShmTable* t, const std::string& pool, const std::string& name,
          bool* fresh)
{
    for (int i = 0; i < kMaxNodes; ++i) {
        ShmNode& n = t->nodes[i];
        if (n.ever_used && pool == n.pool && name == n.name &&
            (n.in_use || n.active == 0)) {
            *fresh = !n.in_use;
            return i;
        }
    }
    *fresh = true;
    for (int i = 0; i < kMaxNodes; ++i)
        if (!t->nodes[i].ever_used)
            return i;
    for (int i = 0; i < kMaxNodes; ++i)
        if (!t->nodes[i].in_use && t->nodes[i].active == 0)
            return i;
    return -1;
}

}  // namespace

// Creates the access log file as the parent (root, when it is) and gives it
// to the workers' user, so that the unprivileged workers can open it and
// reopen it after logrotate (whose `create` makes the next one likewise).
void
BalancerState::prepare_access_log(const Config& config) noexcept
{
    const std::string& path = config.balancerd.access_log;
    if (path.empty() || path == "syslog")
        return;
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                    0640);
    if (fd < 0) {
        log_warn("access log %s: %s", path.c_str(), std::strerror(errno));
        return;
    }
    if (geteuid() == 0) {
        struct passwd* pw = getpwnam(config.global.user.c_str());
        if (pw != nullptr && fchown(fd, pw->pw_uid, pw->pw_gid) < 0)
            log_warn("access log %s: %s", path.c_str(), std::strerror(errno));
    }
    ::close(fd);
}

bool
BalancerState::configure(std::shared_ptr<const Config> config,
                         unsigned generation, std::string* err)
{
    if (!region_) {
        region_ =
            ShmRegion::create_memfd("balancerd-nodes", sizeof(ShmTable), err);
        if (!region_)
            return false;
        auto* t = new (region_.data()) ShmTable;
        t->magic = kMagic;
        if (!t->mutex.init(err))
            return false;
        table_ = NodeTable(t);
    }
    ShmTable* t = table_.raw();
    auto layout = std::make_shared<Layout>();
    layout->config = config;
    std::vector<bool> keep_node(kMaxNodes, false), keep_pool(kMaxPools, false);
    {
        ShmLock lock(&t->mutex);
        for (const auto& [pname, pc] : config->pools) {
            PoolLayout pl;
            pl.name = pname;
            pl.config = &pc;
            int ps = -1;
            for (int i = 0; i < kMaxPools && ps < 0; ++i)
                if (t->pools[i].ever_used && pname == t->pools[i].name)
                    ps = i;
            for (int i = 0; i < kMaxPools && ps < 0; ++i)
                if (!t->pools[i].in_use && !keep_pool[i])
                    ps = i;
            if (ps < 0) {
                *err = "balancerd: more than " + std::to_string(kMaxPools) +
                       " pools";
                return false;
            }
            ShmPool& p = t->pools[ps];
            if (!p.ever_used || pname != p.name) {
                copy_text(p.name, sizeof p.name, pname);
                p.queued = 0;
            }
            keep_pool[ps] = true;
            pl.slot = ps;
            for (const NodeConfig& nc : pc.nodes) {
                bool fresh = false;
                int s = node_slot(t, pname, nc.name, &fresh);
                while (s >= 0 && keep_node[s]) {
                    // A slot just taken by this configuration; impossible
                    // for a distinct name, but never share one.
                    s = -1;
                }
                if (s < 0) {
                    *err = "balancerd: more than " + std::to_string(kMaxNodes) +
                           " nodes";
                    return false;
                }
                ShmNode& n = t->nodes[s];
                int maxconn = nc.maxconn > 0 ? nc.maxconn : pc.maxconn;
                if (fresh) {
                    uint32_t active = n.active.load();
                    std::memset(static_cast<void*>(&n), 0, sizeof n);
                    n.active = active;
                    copy_text(n.pool, sizeof n.pool, pname);
                    copy_text(n.name, sizeof n.name, nc.name);
                    n.up = 1;
                    n.weight = nc.weight;
                    n.last_change = wall_ms();
                } else if (n.weight == n.config_weight) {
                    // Not changed at runtime: the new configuration's
                    // weight applies; a runtime weight carries over.
                    n.weight = nc.weight;
                }
                n.config_weight = nc.weight;
                n.maxconn = maxconn;
                copy_text(n.address, sizeof n.address, nc.address_text);
                n.ever_used = 1;
                keep_node[s] = true;
                pl.nodes.push_back(s);
            }
            layout->pools.emplace(pname, std::move(pl));
        }
        for (int i = 0; i < kMaxNodes; ++i)
            t->nodes[i].in_use = keep_node[i] ? 1 : 0;
        for (int i = 0; i < kMaxPools; ++i) {
            t->pools[i].in_use = keep_pool[i] ? 1 : 0;
            if (keep_pool[i])
                t->pools[i].ever_used = 1;
        }
    }
    if (!open_metrics(*config, err))
        return false;
    prepare_access_log(*config);
    layouts_[generation] = layout;
    current_ = generation;
    // Keep the layouts of the last few generations: a worker respawned
    // late for an old generation still finds its own.
    while (layouts_.size() > 4)
        layouts_.erase(layouts_.begin());
    return true;
}

void
BalancerState::child_exited(pid_t pid) noexcept
{
    if (table_.raw() == nullptr)
        return;
    auto [active, queued] = table_.release_worker(static_cast<int32_t>(pid));
    if (active > 0 || queued > 0)
        log_notice(
            "worker (pid %d) ended holding %u requests in flight and "
            "%u queued: their node and queue slots are free again",
            static_cast<int>(pid), active, queued);
}

std::string
BalancerState::status() const
{
    std::string s;
    uint32_t nodes = 0, up = 0;
    for (const ShmNode& n : table_.raw()->nodes) {
        if (!n.in_use)
            continue;
        ++nodes;
        up += n.up ? 1 : 0;
    }
    s += "nodes: " + std::to_string(nodes) + "\n";
    s += "nodes_up: " + std::to_string(up) + "\n";
    return s;
}

bool
BalancerState::find_node(const std::string& spec, int* slot,
                         std::string* err) const
{
    size_t slash = spec.find('/');
    if (slash == std::string::npos) {
        *err = "expected POOL/NODE, got '" + spec + "'\n";
        return false;
    }
    std::string pool = spec.substr(0, slash), name = spec.substr(slash + 1);
    ShmTable* t = table_.raw();
    for (int i = 0; i < kMaxNodes; ++i) {
        const ShmNode& n = t->nodes[i];
        if (n.in_use && pool == n.pool && name == n.name) {
            *slot = i;
            return true;
        }
    }
    *err = "no node " + spec + "\n";
    return false;
}

std::string
BalancerState::show_pools() const
{
    std::vector<std::vector<std::string>> rows = {
        {"POOL", "BALANCE", "NODES", "UP", "ACTIVE", "QUEUED", "REQUESTS",
         "QUEUE_FULL", "QUEUE_TIMEOUTS", "NO_NODE", "SEND_TIMEOUTS", "WRITER"}};
    auto l = layout(current_);
    if (!l)
        return format_columns(rows);
    for (const auto& [name, pl] : l->pools) {
        const ShmPool& p = table_.pool(pl.slot);
        uint32_t up = 0, active = 0;
        std::string writer = "-";
        for (int s : pl.nodes) {
            const ShmNode& n = table_.node(s);
            up += n.up ? 1 : 0;
            active += n.active;
            if (n.writer)
                writer = n.name;
        }
        rows.push_back(
            {name, pl.config->balance, std::to_string(pl.nodes.size()),
             std::to_string(up), std::to_string(active),
             std::to_string(p.queued.load()), std::to_string(ld(p.requests)),
             std::to_string(ld(p.queue_full)),
             std::to_string(ld(p.queue_timeouts)),
             std::to_string(ld(p.no_node)), std::to_string(ld(p.send_timeouts)),
             writer});
    }
    return format_columns(rows);
}

std::string
BalancerState::show_nodes() const
{
    std::vector<std::vector<std::string>> rows = {
        {"NODE", "ADDRESS", "ADMIN", "HEALTH", "SOURCE", "WEIGHT", "ACTIVE",
         "MAXCONN", "QUEUED", "REQUESTS", "ERRORS", "LAST_CHANGE", "REASON"}};
    auto l = layout(current_);
    if (!l)
        return format_columns(rows);
    for (const auto& [name, pl] : l->pools) {
        const ShmPool& p = table_.pool(pl.slot);
        for (int s : pl.nodes) {
            const ShmNode& n = table_.node(s);
            std::string reason = table_.reason(s);
            rows.push_back(
                {name + "/" + n.name, n.address, admin_name(n.admin),
                 n.up ? "up" : "down", source_name(n.source),
                 std::to_string(n.weight.load()),
                 std::to_string(n.active.load()),
                 n.maxconn ? std::to_string(n.maxconn.load()) : "-",
                 std::to_string(p.queued.load()),
                 std::to_string(ld(n.requests)), std::to_string(ld(n.errors)),
                 fmt_time(n.last_change), reason.empty() ? "-" : reason});
        }
    }
    return format_columns(rows);
}

std::string
BalancerState::show_stats() const
{
    std::vector<std::vector<std::string>> rows = {
        {"NODE", "REQUESTS", "ERRORS", "RETRIES", "CONNECT_FAILS", "TIMEOUTS",
         "1XX", "2XX", "3XX", "4XX", "5XX", "OWN", "BYTES_IN", "BYTES_OUT",
         "AVG_MS", "P50", "P99"}};
    auto l = layout(current_);
    if (!l)
        return format_columns(rows);
    for (const auto& [name, pl] : l->pools) {
        for (int s : pl.nodes) {
            const ShmNode& n = table_.node(s);
            uint64_t total = 0;
            for (const auto& b : n.hist)
                total += ld(b);
            char avg[32] = "-";
            if (total)
                std::snprintf(avg, sizeof avg, "%.1f",
                              static_cast<double>(ld(n.time_sum_us)) / 1000.0 /
                                  static_cast<double>(total));
            rows.push_back(
                {name + "/" + n.name, std::to_string(ld(n.requests)),
                 std::to_string(ld(n.errors)), std::to_string(ld(n.retries)),
                 std::to_string(ld(n.connect_fails)),
                 std::to_string(ld(n.timeouts)),
                 std::to_string(ld(n.status[1])),
                 std::to_string(ld(n.status[2])),
                 std::to_string(ld(n.status[3])),
                 std::to_string(ld(n.status[4])),
                 std::to_string(ld(n.status[5])),
                 std::to_string(ld(n.status[0])),
                 std::to_string(ld(n.bytes_in)),
                 std::to_string(ld(n.bytes_out)), avg, quantile(n, 0.5),
                 quantile(n, 0.99)});
        }
    }
    return format_columns(rows);
}

std::string
BalancerState::metrics() const
{
    std::string o;
    auto l = layout(current_);
    if (!l)
        return o;
    auto counter = [&](const char* name, const char* help, auto get) {
        o += std::string("# HELP balancerd_") + name + " " + help + "\n";
        o += std::string("# TYPE balancerd_") + name + " counter\n";
        for (const auto& [pname, pl] : l->pools)
            for (int s : pl.nodes) {
                const ShmNode& n = table_.node(s);
                o += std::string("balancerd_") + name + "{pool=\"" + pname +
                     "\",node=\"" + n.name + "\"} " + std::to_string(get(n)) +
                     "\n";
            }
    };
    counter("requests_total", "Requests sent to the node.",
            [](const ShmNode& n) { return ld(n.requests); });
    counter("errors_total", "Requests that failed on the node.",
            [](const ShmNode& n) { return ld(n.errors); });
    counter("retries_total", "Attempts retried elsewhere.",
            [](const ShmNode& n) { return ld(n.retries); });
    counter("connect_failures_total", "Failed connects.",
            [](const ShmNode& n) { return ld(n.connect_fails); });
    counter("timeouts_total", "Connect and response timeouts.",
            [](const ShmNode& n) { return ld(n.timeouts); });
    counter("bytes_in_total", "Bytes received from the node.",
            [](const ShmNode& n) { return ld(n.bytes_in); });
    counter("bytes_out_total", "Bytes sent to the node.",
            [](const ShmNode& n) { return ld(n.bytes_out); });
    o += "# HELP balancerd_responses_total Responses by status class.\n"
         "# TYPE balancerd_responses_total counter\n";
    static const char* kClass[] = {"own", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (const auto& [pname, pl] : l->pools)
        for (int s : pl.nodes) {
            const ShmNode& n = table_.node(s);
            for (int c = 0; c < kStatusClasses; ++c)
                o += "balancerd_responses_total{pool=\"" + pname +
                     "\",node=\"" + n.name + "\",class=\"" + kClass[c] +
                     "\"} " + std::to_string(ld(n.status[c])) + "\n";
        }
    o += "# HELP balancerd_node_up Health: 1 up, 0 down.\n"
         "# TYPE balancerd_node_up gauge\n";
    std::string active =
        "# HELP balancerd_node_active Requests in flight.\n"
        "# TYPE balancerd_node_active gauge\n";
    std::string hist =
        "# HELP balancerd_response_seconds Time to a complete response.\n"
        "# TYPE balancerd_response_seconds histogram\n";
    for (const auto& [pname, pl] : l->pools)
        for (int s : pl.nodes) {
            const ShmNode& n = table_.node(s);
            std::string lbl = "pool=\"" + pname + "\",node=\"" + n.name + "\"";
            o += "balancerd_node_up{" + lbl + "} " +
                 std::to_string(n.up.load()) + "\n";
            active += "balancerd_node_active{" + lbl + "} " +
                      std::to_string(n.active.load()) + "\n";
            uint64_t cum = 0;
            for (int i = 0; i < kHistBuckets; ++i) {
                cum += ld(n.hist[i]);
                char le[32];
                if (i == kHistBuckets - 1)
                    std::snprintf(le, sizeof le, "+Inf");
                else
                    std::snprintf(le, sizeof le, "%g",
                                  kHistBoundsMs[i] / 1000.0);
                hist += "balancerd_response_seconds_bucket{" + lbl + ",le=\"" +
                        le + "\"} " + std::to_string(cum) + "\n";
            }
            char sum[48];
            std::snprintf(sum, sizeof sum, "%.6f",
                          static_cast<double>(ld(n.time_sum_us)) / 1e6);
            hist += "balancerd_response_seconds_sum{" + lbl + "} " + sum + "\n";
            hist += "balancerd_response_seconds_count{" + lbl + "} " +
                    std::to_string(cum) + "\n";
        }
    o += active + hist;
    o += "# HELP balancerd_pool_queued Requests waiting in the queue.\n"
         "# TYPE balancerd_pool_queued gauge\n";
    for (const auto& [pname, pl] : l->pools)
        o += "balancerd_pool_queued{pool=\"" + pname + "\"} " +
             std::to_string(table_.pool(pl.slot).queued.load()) + "\n";
    o += "# HELP balancerd_pool_queue_timeouts_total Queue timeouts.\n"
         "# TYPE balancerd_pool_queue_timeouts_total counter\n";
    for (const auto& [pname, pl] : l->pools)
        o += "balancerd_pool_queue_timeouts_total{pool=\"" + pname + "\"} " +
             std::to_string(ld(table_.pool(pl.slot).queue_timeouts)) + "\n";
    o += "# HELP balancerd_pool_send_timeouts_total Clients closed for not "
         "reading their response.\n"
         "# TYPE balancerd_pool_send_timeouts_total counter\n";
    for (const auto& [pname, pl] : l->pools)
        o += "balancerd_pool_send_timeouts_total{pool=\"" + pname + "\"} " +
             std::to_string(ld(table_.pool(pl.slot).send_timeouts)) + "\n";
    return o;
}

}  // namespace sj
