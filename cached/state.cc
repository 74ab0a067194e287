#include "cached/state.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <new>
#include <regex>

#include "cached/http_cache.h"
#include "common/check.h"
#include "common/clock.h"
#include "common/control_server.h"
#include "common/log.h"
#include "common/net.h"

namespace sj {

namespace {

constexpr uint64_t kMagic = 0x736a636163686531ull;  // "sjcache1"
// How far a key's pass-table probe goes before giving up: the table is a
// hint, and a full neighbourhood only costs collapsing for that key.
constexpr int kProbe = 8;

uint64_t
ld(const std::atomic<uint64_t>& a) noexcept
{
    return a.load(std::memory_order_relaxed);
}

std::string
u64(uint64_t v)
{
    return std::to_string(v);
}

std::string
ratio(uint64_t hits, uint64_t total)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f",
                  total ? static_cast<double>(hits) / total : 0.0);
    return buf;
}

}  // namespace

uint64_t
key_hash(std::string_view key) noexcept
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : key) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h | 1;  // 0 marks an empty slot
}

int64_t
now_ms() noexcept
{
    return monotonic_ms();
}

PassKind
pass_lookup(CachedShared* s, uint64_t hash, int32_t* pid) noexcept
{
    int64_t now = now_ms();
    for (int i = 0; i < kProbe; ++i) {
        PassSlot& p = s->pass[(hash + i) % kPassSlots];
        if (p.hash.load(std::memory_order_acquire) != hash)
            continue;
        if (p.until_ms.load(std::memory_order_relaxed) <= now)
            return PassKind::kNone;
        if (pid != nullptr)
            *pid = p.pid.load(std::memory_order_relaxed);
        return static_cast<PassKind>(p.kind.load(std::memory_order_relaxed));
    }
    return PassKind::kNone;
}

namespace {

// The slot for `hash`: the one holding it, else a free or expired one
// within kProbe of its home, else null. Call with pass_lock held.
PassSlot*
pass_slot(CachedShared* s, uint64_t hash, int64_t now) noexcept
{
    PassSlot* victim = nullptr;
    for (int i = 0; i < kProbe; ++i) {
        PassSlot& p = s->pass[(hash + i) % kPassSlots];
        uint64_t h = p.hash.load(std::memory_order_acquire);
        if (h == hash)
            return &p;
        if (victim == nullptr &&
            (h == 0 || p.until_ms.load(std::memory_order_relaxed) <= now))
            victim = &p;
    }
    return victim;
}

// Both kinds of watchers of `p`, taken.
uint64_t
take_all(PassSlot* p) noexcept
{
    return p->watchers.exchange(0) | p->end_watchers.exchange(0);
}

// A new fetch of the same key keeps the watchers (of an expired or failed
// fetch, or of the claim this fetch made): they are woken when it moves.
// Anything else returns them, to be woken now (none if the slot held
// another key).
uint64_t
pass_fill(PassSlot* p, uint64_t hash, PassKind kind, int64_t until,
          int32_t pid) noexcept
{
    uint64_t watchers = 0;
    if (p->hash.load(std::memory_order_relaxed) != hash) {
        p->watchers.store(0, std::memory_order_relaxed);
        p->end_watchers.store(0, std::memory_order_relaxed);
    } else if (kind != PassKind::kFetching) {
        watchers = take_all(p);
    }
    p->until_ms.store(until, std::memory_order_relaxed);
    p->kind.store(static_cast<int32_t>(kind), std::memory_order_relaxed);
    p->pid.store(pid, std::memory_order_relaxed);
    p->hash.store(hash, std::memory_order_release);
    return watchers;
}

int64_t
until_of(int64_t now, double secs) noexcept
{
    return now + static_cast<int64_t>(secs * 1000);
}

}  // namespace

uint64_t
pass_set(CachedShared* s, uint64_t hash, PassKind kind, double secs,
         int32_t pid) noexcept
{
    // The table holds hints: a holder that died mid-update leaves at worst
    // one wrong entry, which expires.
    ShmLock lock(&s->pass_lock);
    int64_t now = now_ms();
    if (PassSlot* p = pass_slot(s, hash, now))
        return pass_fill(p, hash, kind, until_of(now, secs), pid);
    return 0;
}

PassHeld
pass_claim(CachedShared* s, uint64_t hash, double secs, int32_t pid,
           int64_t waiting_since, int watcher) noexcept
{
    ShmLock lock(&s->pass_lock);
    int64_t now = now_ms();
    PassSlot* p = pass_slot(s, hash, now);
    if (p == nullptr)
        return {};
    if (p->hash.load(std::memory_order_relaxed) == hash &&
        p->until_ms.load(std::memory_order_relaxed) > now) {
        PassHeld held;
        held.kind = static_cast<PassKind>(
            p->kind.load(std::memory_order_relaxed));
        held.pid = p->pid.load(std::memory_order_relaxed);
        held.status = p->status.load(std::memory_order_relaxed);
        // A failure answers those that waited for it; a request that
        // came after it tries the origin again.
        if (held.kind == PassKind::kFetching && held.pid != pid &&
            watcher >= 0) {
            p->watchers.fetch_or(watcher_bit(watcher));
            std::atomic_thread_fence(std::memory_order_seq_cst);
        }
        if (held.kind == PassKind::kPass || held.kind == PassKind::kFetching ||
            (held.kind == PassKind::kFailed && waiting_since != 0 &&
             waiting_since <= p->since_ms.load(std::memory_order_relaxed)))
            return held;
    }
    pass_fill(p, hash, PassKind::kFetching, until_of(now, secs), pid);
    return {};
}

namespace {

// pass_lock held: the kFetching slot of `hash` that `pid` owns, or null.
PassSlot*
own_fetch(CachedShared* s, uint64_t hash, int32_t pid) noexcept
{
    for (int i = 0; i < kProbe; ++i) {
        PassSlot& p = s->pass[(hash + i) % kPassSlots];
        if (p.hash.load(std::memory_order_acquire) != hash)
            continue;
        if (p.kind.load(std::memory_order_relaxed) ==
                static_cast<int32_t>(PassKind::kFetching) &&
            p.pid.load(std::memory_order_relaxed) == pid)
            return &p;
        return nullptr;
    }
    return nullptr;
}

}  // namespace

uint64_t
pass_clear_fetch(CachedShared* s, uint64_t hash, int32_t pid) noexcept
{
    ShmLock lock(&s->pass_lock);
    PassSlot* p = own_fetch(s, hash, pid);
    if (p == nullptr)
        return 0;
    p->until_ms.store(0, std::memory_order_relaxed);
    return take_all(p);
}

uint64_t
pass_fail_fetch(CachedShared* s, uint64_t hash, int32_t pid, int status,
                double secs) noexcept
{
    ShmLock lock(&s->pass_lock);
    PassSlot* p = own_fetch(s, hash, pid);
    if (p == nullptr)
        return 0;
    int64_t now = now_ms();
    p->since_ms.store(now, std::memory_order_relaxed);
    p->status.store(status, std::memory_order_relaxed);
    p->kind.store(static_cast<int32_t>(PassKind::kFailed),
                  std::memory_order_relaxed);
    p->until_ms.store(until_of(now, secs), std::memory_order_relaxed);
    return take_all(p);
}

namespace {

// Without the lock: the live slot of `hash`, or null.
PassSlot*
live_slot(CachedShared* s, uint64_t hash) noexcept
{
    int64_t now = now_ms();
    for (int i = 0; i < kProbe; ++i) {
        PassSlot& p = s->pass[(hash + i) % kPassSlots];
        if (p.hash.load(std::memory_order_acquire) != hash)
            continue;
        return p.until_ms.load(std::memory_order_relaxed) > now ? &p : nullptr;
    }
    return nullptr;
}

}  // namespace

bool
pass_watch(CachedShared* s, uint64_t hash, int watcher, bool end_only) noexcept
{
    PassSlot* p = live_slot(s, hash);
    if (p == nullptr || p->kind.load(std::memory_order_relaxed) !=
                            static_cast<int32_t>(PassKind::kFetching))
        return false;
    (end_only ? p->end_watchers : p->watchers).fetch_or(watcher_bit(watcher));
    // Pairs with the fence in pass_take_watchers(): the caller's next look
    // at the fill sees its progress, or the filler sees this bit.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return true;
}

void
pass_release_process(CachedShared* s, int32_t pid,
                     void (*wake)(void* arg, uint64_t hash,
                                  uint64_t watchers) noexcept,
                     void* arg) noexcept
{
    ShmLock lock(&s->pass_lock);
    for (PassSlot& p : s->pass) {
        if (p.hash.load(std::memory_order_relaxed) == 0 ||
            p.pid.load(std::memory_order_relaxed) != pid ||
            p.kind.load(std::memory_order_relaxed) !=
                static_cast<int32_t>(PassKind::kFetching))
            continue;
        p.until_ms.store(0, std::memory_order_relaxed);
        if (uint64_t w = take_all(&p))
            wake(arg, p.hash.load(std::memory_order_relaxed), w);
    }
}

void
wake_watchers(CachedShared* s, WorkerWake& wake, uint64_t mask,
              uint64_t hash) noexcept
{
    for (int i = 0; mask != 0 && i < kWatchSlots; ++i)
        if ((mask & watcher_bit(i)) != 0 && !wake.send(i, &hash, sizeof hash)) {
            // Its socket is full: it has wake-ups to read, and on the next
            // it wakes every request waiting there, ours too. Sending again
            // after setting the flag means one of them is read after it is
            // set.
            s->watch_overflow[i].store(1);
            (void)wake.send(i, &hash, sizeof hash);
        }
}

int
watch_slot_claim(CachedShared* s, int32_t pid) noexcept
{
    for (int i = 0; i < kWatchSlots; ++i) {
        int32_t free = 0;
        if (s->watch_pid[i].compare_exchange_strong(free, pid))
            return i;
    }
    return -1;
}

void
watch_slot_release(CachedShared* s, int32_t pid) noexcept
{
    for (auto& w : s->watch_pid) {
        int32_t held = pid;
        w.compare_exchange_strong(held, 0);
    }
}

uint64_t
pass_take_watchers(CachedShared* s, uint64_t hash) noexcept
{
    // The caller published the fill's progress before this fence.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    PassSlot* p = live_slot(s, hash);
    if (p == nullptr || p->watchers.load(std::memory_order_relaxed) == 0)
        return 0;
    return p->watchers.exchange(0);
}

bool
url_to_key(const CachedConfig& config, const std::string& url, std::string* key)
{
    std::string_view u = url;
    for (std::string_view scheme : {"http://", "https://"})
        if (u.size() > scheme.size() &&
            http_iequals(u.substr(0, scheme.size()), scheme)) {
            u.remove_prefix(scheme.size());
            break;
        }
    size_t slash = u.find('/');
    if (slash == 0 || slash == std::string_view::npos || u.empty())
        return false;
    KeyPolicy policy;
    policy.sort_query = config.sort_query;
    policy.drop_params = config.ignore_params;
    key->clear();
    cache_key(u.substr(0, slash), u.substr(slash), policy, key);
    return true;
}

// ---------------------------------------------------------------- state

CachedState::CachedState(struct ev_loop* loop)
    : loop_(loop), metrics_server_(loop, [this] { return metrics(); }),
      wake_(loop, nullptr, nullptr)
{
    // After logrotate: create the new access log for the workers, which
    // get the same signal from the parent and reopen it.
    ev_signal_init(&usr1_, on_usr1, SIGUSR1);
    usr1_.data = this;
    ev_signal_start(loop_, &usr1_);
}

void
CachedState::on_usr1(struct ev_loop*, ev_signal* w, int) noexcept
{
    static_cast<CachedState*>(w->data)->prepare_access_log();
}

void
CachedState::prepare_access_log() noexcept
{
    if (!config_)
        return;
    const std::string& path = config_->cached.access_log;
    if (path.empty() || path == "syslog")
        return;
    // Workers run unprivileged: create the file for them.
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                    0640);
    if (fd < 0) {
        log_warn("access log %s: %s", path.c_str(), std::strerror(errno));
        return;
    }
    struct passwd* pw = getpwnam(config_->global.user.c_str());
    if (geteuid() == 0 && pw != nullptr &&
        fchown(fd, pw->pw_uid, pw->pw_gid) < 0)
        log_warn("access log %s: %s", path.c_str(), std::strerror(errno));
    ::close(fd);
}

CachedState::~CachedState()
{
    ev_signal_stop(loop_, &usr1_);
}

void
CachedState::child_exited(pid_t pid) noexcept
{
    // The pins and fills of a worker that died (SIGKILL, a crash) go back
    // at once: a dead object only it pinned is freed, its fills discarded.
    if (store_)
        store_.release_process(pid);
    if (shared_ != nullptr) {
        // Requests waiting for its fetches go to the origin now, rather
        // than when cached.collapse_wait runs out.
        // The workers name their wake-up sockets after this process (the
        // one that forked them, which may not be the one that made us).
        if (wake_pid_ != getpid() && wake_.open_sender("cached", getpid()))
            wake_pid_ = getpid();
        pass_release_process(
            shared_, static_cast<int32_t>(pid),
            [](void* arg, uint64_t hash, uint64_t watchers) noexcept {
                auto* self = static_cast<CachedState*>(arg);
                wake_watchers(self->shared_, self->wake_, watchers, hash);
            },
            this);
        watch_slot_release(shared_, static_cast<int32_t>(pid));
    }
}

bool
CachedState::configure(std::shared_ptr<const Config> config,
                       unsigned generation, std::string* err)
{
    const CachedConfig& c = config->cached;
    if (!store_) {
        store_ = Store::create(c.memory, c.max_object, err);
        if (!store_)
            return false;
        memory_ = c.memory;
        region_ = ShmRegion::create_anonymous(sizeof(CachedShared), err);
        if (!region_)
            return false;
        shared_ = new (region_.data()) CachedShared();
        shared_->magic = kMagic;
        if (!shared_->pass_lock.init(err))
            return false;
        for (auto& u : shared_->tier_up)
            u.store(1);
        log_info("store: %zu bytes of memory plus %zu of overhead", c.memory,
                 store_.overhead());
    } else if (c.memory != memory_ || c.max_object != store_.max_object()) {
        // The store's region is sized once; resizing would drop every
        // object, which a reload must never do behind the operator's back.
        log_warn(
            "store: memory and max_object changes take effect at the "
            "next restart");
    }
    std::vector<ListenerTls> tls;
    for (const ListenConfig& l : c.listen) {
        ListenerTls lt;
        if (l.tls) {
            lt.sni = std::make_unique<SniSelector>();
            std::vector<std::pair<std::string, std::string>> certs;
            certs.emplace_back(l.tls_config.certificate, l.tls_config.key);
            for (const auto& p : l.tls_config.sni)
                certs.push_back(p);
            for (const auto& [cert, key] : certs) {
                std::string e;
                SslCtxPtr ctx = make_server_ctx(cert, key, &e);
                if (!ctx || !lt.sni->add(std::move(ctx), &e)) {
                    *err = l.address_text + ": " + e;
                    return false;
                }
            }
            lt.sni->install();
        }
        tls.push_back(std::move(lt));
    }
    if (!open_metrics(*config, err))
        return false;
    config_ = config;
    prepare_access_log();
    tls_[generation] = std::move(tls);
    // A selector must outlive the connections made from it: keep a few
    // generations, as old workers finish their connections.
    while (tls_.size() > 4)
        tls_.erase(tls_.begin());
    return true;
}

SSL_CTX*
CachedState::tls_ctx(unsigned generation, size_t i) const noexcept
{
    auto it = tls_.find(generation);
    if (it == tls_.end() || i >= it->second.size() || !it->second[i].sni)
        return nullptr;
    return it->second[i].sni->default_ctx();
}

void
CachedState::after_fork() noexcept
{
    ev_signal_stop(loop_, &usr1_);
    metrics_server_.close();
}

std::string
CachedState::status() const
{
    StoreStats s = store_.stats();
    return "objects: " + u64(s.objects) + "\nbytes_used: " + u64(s.bytes_used) +
           "\n";
}

size_t
CachedState::purge_url(const std::string& url)
{
    std::string key;
    if (!config_ || !url_to_key(config_->cached, url, &key))
        return 0;
    size_t n = store_.remove(key) ? 1 : 0;
    key.push_back('\0');
    n += store_.remove_prefix(key);
    shared_->store_epoch.fetch_add(1);
    return n;
}

std::string
CachedState::show_stats() const
{
    StoreStats s = store_.stats();
    uint64_t t[15] = {};
    std::string per;
    per +=
        "worker pid requests hits misses stale revalidated passes "
        "collapsed origin_requests origin_errors bytes_out accepted "
        "busy%\n";
    int nworkers = config_ ? config_->cached.workers : 0;
    int64_t now = monotonic_us();
    for (int i = 0; i < kMaxWorkerSlots; ++i) {
        const WorkerCounters& w = shared_->workers[i];
        int32_t pid = w.pid.load(std::memory_order_relaxed);
        if (pid == 0 && ld(w.requests) == 0)
            continue;
        const std::atomic<uint64_t>* f[] = {
            &w.requests,        &w.hits,          &w.misses,
            &w.stale,           &w.revalidated,   &w.passes,
            &w.collapsed,       &w.not_modified,  &w.bytes_out,
            &w.origin_requests, &w.origin_errors, &w.purges,
            &w.client_errors,   &w.tier_hits,     &w.woken};
        for (int k = 0; k < 15; ++k)
            t[k] += ld(*f[k]);
        per += "worker " + std::to_string(i) + " " + std::to_string(pid) + " " +
               u64(ld(w.requests)) + " " + u64(ld(w.hits)) + " " +
               u64(ld(w.misses)) + " " + u64(ld(w.stale)) + " " +
               u64(ld(w.revalidated)) + " " + u64(ld(w.passes)) + " " +
               u64(ld(w.collapsed)) + " " + u64(ld(w.origin_requests)) + " " +
               u64(ld(w.origin_errors)) + " " + u64(ld(w.bytes_out)) + " " +
               u64(ld(shared_->accept[i].accepted)) + " " +
               std::to_string(busy_now(shared_->accept[i], now) / 10) + "\n";
    }
    (void)nworkers;
    std::string out;
    auto kv = [&](const char* k, const std::string& v) {
        out += k;
        out += ": ";
        out += v;
        out += '\n';
    };
    kv("requests", u64(t[0]));
    kv("hits", u64(t[1]));
    kv("misses", u64(t[2]));
    kv("hit_ratio", ratio(t[1] + t[3], t[1] + t[2] + t[3]));
    kv("stale", u64(t[3]));
    kv("revalidated", u64(t[4]));
    kv("passes", u64(t[5]));
    kv("collapsed", u64(t[6]));
    kv("not_modified", u64(t[7]));
    kv("bytes_out", u64(t[8]));
    kv("origin_requests", u64(t[9]));
    kv("origin_errors", u64(t[10]));
    kv("purges", u64(t[11]));
    kv("client_errors", u64(t[12]));
    kv("tier_hits", u64(t[13]));
    kv("woken", u64(t[14]));
    kv("origin", shared_->origin_down.load() ? "down" : "up");
    kv("objects", u64(s.objects));
    kv("filling", u64(s.filling));
    kv("bytes", u64(s.bytes_used));
    kv("memory_used", u64(s.bytes_used));
    kv("memory_capacity", u64(s.capacity));
    kv("memory_overhead", u64(s.overhead));
    kv("inserts", u64(s.inserts));
    kv("aborts", u64(s.aborts));
    kv("evictions", u64(s.evictions));
    kv("removals", u64(s.removals));
    kv("refused", u64(s.refused));
    kv("recoveries", u64(s.recoveries));
    kv("bans", u64(ld(shared_->bans)));
    return out + per;
}

std::string
CachedState::show_object(const std::string& url) const
{
    std::string key;
    if (!config_ || !url_to_key(config_->cached, url, &key))
        return {};
    std::string out;
    std::string variants = key;
    variants.push_back('\0');
    int64_t now = time(nullptr);
    store_.for_each([&](const ObjectInfo& info) {
        if (info.key != key && info.key.substr(0, variants.size()) != variants)
            return;
        const ObjectMeta& m = *info.meta;
        AgeInputs a{m.age_value, m.date_value, m.request_time, m.response_time};
        int64_t age = current_age(a, now);
        std::string vary(
            info.key.substr(std::min(info.key.size(), variants.size())));
        for (char& c : vary)
            if (c == '\n' || c == '\x01')
                c = c == '\n' ? '|' : '-';
        char line[512];
        std::snprintf(
            line, sizeof line,
            "object %s%s\n  status %u body %" PRIu64 " age %" PRId64
            " ttl %" PRId64 " state %s%s%s\n",
            key.c_str(), vary.empty() ? "" : (" variant " + vary).c_str(),
            m.status, info.body_size, age, m.freshness_lifetime - age,
            info.filling                  ? "filling"
            : age <= m.freshness_lifetime ? "fresh"
                                          : "stale",
            m.etag.empty() ? "" : " etag ", std::string(m.etag).c_str());
        out += line;
        if (!m.vary_names.empty()) {
            out += "  vary ";
            out += m.vary_names;
            out += '\n';
        }
    });
    return out;
}

void
CachedState::add_commands(ControlServer& control)
{
    control.add(
        "purge", true,
        [this](const std::vector<std::string>& a, const ControlPeer&) {
            if (a.size() != 1)
                return ControlReply{400, "usage: purge URL\n"};
            std::string key;
            if (!url_to_key(config_->cached, a[0], &key))
                return ControlReply{400, "purge: expected http://HOST/PATH\n"};
            size_t n = purge_url(a[0]);
            log_notice("purge %s: %zu objects", a[0].c_str(), n);
            return ControlReply{n ? 200 : 404,
                                "purged " + std::to_string(n) + "\n"};
        });
    control.add(
        "ban", true,
        [this](const std::vector<std::string>& a, const ControlPeer&) {
            if (a.size() != 1 || a[0].empty())
                return ControlReply{400, "usage: ban PREFIX | ban ~REGEX\n"};
            size_t n = 0;
            if (a[0][0] == '~') {
                std::regex re;
                try {
                    re = std::regex(a[0].substr(1), std::regex::extended);
                } catch (const std::regex_error& e) {
                    return ControlReply{400, std::string("ban: bad regex: ") +
                                                 e.what() + "\n"};
                }
                // The regex sees the primary key ("host/path?query"), not the
                // variant suffix.
                n = store_.remove_if([&re](const ObjectInfo& info) {
                    std::string_view k = info.key;
                    size_t nul = k.find('\0');
                    if (nul != std::string_view::npos)
                        k = k.substr(0, nul);
                    return std::regex_search(k.begin(), k.end(), re);
                });
            } else {
                std::string key;
                if (!url_to_key(config_->cached, a[0], &key))
                    return ControlReply{400,
                                        "ban: expected http://HOST/PREFIX\n"};
                n = store_.remove_prefix(key);
            }
            shared_->bans.fetch_add(1, std::memory_order_relaxed);
            shared_->store_epoch.fetch_add(1);
            log_notice("ban %s: %zu objects", a[0].c_str(), n);
            return ControlReply{200, "banned " + std::to_string(n) + "\n"};
        });
    control.add("show stats", false,
                [this](const std::vector<std::string>&, const ControlPeer&) {
                    return ControlReply{200, show_stats()};
                });
    control.add("show object", false,
                [this](const std::vector<std::string>& a, const ControlPeer&) {
                    if (a.size() != 1)
                        return ControlReply{400, "usage: show object URL\n"};
                    std::string s = show_object(a[0]);
                    if (s.empty())
                        return ControlReply{404, "not stored: " + a[0] + "\n"};
                    return ControlReply{200, s};
                });
    control.add("origin", true,
                [this](const std::vector<std::string>& a, const ControlPeer&) {
                    if (a.size() != 1 || (a[0] != "up" && a[0] != "down"))
                        return ControlReply{400, "usage: origin up|down\n"};
                    bool down = a[0] == "down";
                    if (shared_->origin_down.exchange(down ? 1 : 0) !=
                        (down ? 1u : 0u))
                        log_notice("origin: marked %s", down ? "down" : "up");
                    return ControlReply{200, "origin " + a[0] + "\n"};
                });
    control.add(
        "node health", true,
        [this](const std::vector<std::string>& a, const ControlPeer&) {
            if (a.size() < 2 || (a[1] != "up" && a[1] != "down"))
                return ControlReply{400,
                                    "usage: node health POOL/NODE up|down "
                                    "[REASON]\n"};
            size_t slash = a[0].find('/');
            if (slash == std::string::npos)
                return ControlReply{400, "expected POOL/NODE\n"};
            std::string pool = a[0].substr(0, slash);
            std::string node = a[0].substr(slash + 1);
            const CachedConfig& c = config_->cached;
            if (pool != c.shared_tier)
                // heartbeatd sends every pool's states; only the tier's matter.
                return ControlReply{200, "ignored: not the shared tier\n"};
            auto it = config_->pools.find(pool);
            if (it == config_->pools.end())
                return ControlReply{404, "no pool " + pool + "\n"};
            const auto& nodes = it->second.nodes;
            for (size_t i = 0; i < nodes.size() && i < kMaxTierNodes; ++i) {
                if (nodes[i].name != node)
                    continue;
                shared_->tier_up[i].store(a[1] == "up" ? 1 : 0);
                shared_->tier_epoch.fetch_add(1);
                log_notice("shared tier %s: reported %s", a[0].c_str(),
                           a[1].c_str());
                return ControlReply{200, a[0] + " " + a[1] + "\n"};
            }
            return ControlReply{404, "no node " + a[0] + "\n"};
        });
}

// ---------------------------------------------------------------- metrics

std::string
CachedState::metrics() const
{
    StoreStats s = store_.stats();
    std::string out;
    auto metric = [&](const char* name, const char* type, const char* help,
                      const std::string& value) {
        out += "# HELP ";
        out += name;
        out += ' ';
        out += help;
        out += "\n# TYPE ";
        out += name;
        out += ' ';
        out += type;
        out += '\n';
        out += value;
    };
    struct Field {
        const char* name;
        const char* help;
        std::atomic<uint64_t> WorkerCounters::*f;
    };
    static const Field fields[] = {
        {"cached_requests_total", "Requests answered.",
         &WorkerCounters::requests},
        {"cached_hits_total", "Requests served fresh from the store.",
         &WorkerCounters::hits},
        {"cached_misses_total", "Requests sent to the origin for a miss.",
         &WorkerCounters::misses},
        {"cached_stale_total", "Requests served stale.",
         &WorkerCounters::stale},
        {"cached_revalidated_total", "Stored objects revalidated (304).",
         &WorkerCounters::revalidated},
        {"cached_passes_total", "Requests passed to the origin uncached.",
         &WorkerCounters::passes},
        {"cached_collapsed_total", "Requests that waited for another fetch.",
         &WorkerCounters::collapsed},
        {"cached_woken_total",
         "Waiting requests woken by another worker's fetch.",
         &WorkerCounters::woken},
        {"cached_bytes_out_total", "Bytes sent to clients.",
         &WorkerCounters::bytes_out},
        {"cached_origin_requests_total", "Requests sent to the origin.",
         &WorkerCounters::origin_requests},
        {"cached_origin_errors_total",
         "Origin failures (refused, timeout, 5xx, bad response).",
         &WorkerCounters::origin_errors},
    };
    for (const Field& f : fields) {
        std::string v;
        for (int i = 0; i < kMaxWorkerSlots; ++i) {
            const WorkerCounters& w = shared_->workers[i];
            if (w.pid.load(std::memory_order_relaxed) == 0 &&
                ld(w.requests) == 0)
                continue;
            v += std::string(f.name) + "{worker=\"" + std::to_string(i) +
                 "\"} " + u64(ld(w.*f.f)) + "\n";
        }
        metric(f.name, "counter", f.help, v);
    }
    std::string accepted, busy;
    int64_t now = monotonic_us();
    for (int i = 0; i < kMaxWorkerSlots; ++i) {
        const AcceptSlot& a = shared_->accept[i];
        if (a.pid.load(std::memory_order_relaxed) == 0 && ld(a.accepted) == 0)
            continue;
        std::string label = "{worker=\"" + std::to_string(i) + "\"} ";
        accepted += "cached_accepted_total" + label + u64(ld(a.accepted)) +
                    "\n";
        busy += "cached_worker_busy_ratio" + label +
                ratio(busy_now(a, now), 1000) + "\n";
    }
    metric("cached_accepted_total", "counter", "Client connections accepted.",
           accepted);
    metric("cached_worker_busy_ratio", "gauge",
           "Share of its time the worker spent outside its event loop's "
           "wait, lately (about the last 100 ms).",
           busy);
    metric("cached_objects", "gauge", "Objects in the store.",
           "cached_objects " + u64(s.objects) + "\n");
    metric("cached_memory_used_bytes", "gauge", "Store data bytes in use.",
           "cached_memory_used_bytes " + u64(s.bytes_used) + "\n");
    metric("cached_memory_capacity_bytes", "gauge", "Store data capacity.",
           "cached_memory_capacity_bytes " + u64(s.capacity) + "\n");
    metric("cached_evictions_total", "counter", "Objects evicted for space.",
           "cached_evictions_total " + u64(s.evictions) + "\n");
    metric("cached_origin_up", "gauge", "0 while the origin is marked down.",
           std::string("cached_origin_up ") +
               (shared_->origin_down.load() ? "0" : "1") + "\n");
    return out;
}

bool
CachedState::open_metrics(const Config& config, std::string* err)
{
    const std::string& want = config.cached.metrics_listen_text;
    std::string e;
    if (!metrics_server_.listen(config.cached.metrics_listen, want, &e)) {
        *err = "metrics_listen " + want + ": " + e;
        return false;
    }
    return true;
}

}  // namespace sj
