// Unit tests for cached/store: objects in and out, fills, pins across
// replacement and eviction, the memory bound, SIEVE under a scan, many
// processes at once, and workers killed holding locks, pins and fills.

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "cached/store.h"
#include "t/unit/tap.h"

using sj::LookupStatus;
using sj::ObjectMeta;
using sj::ObjectRef;
using sj::Store;
using sj::StoreWriter;

namespace {

uint64_t
fnv(std::string_view s)
{
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s)
        h = (h ^ c) * 1099511628211ull;
    return h;
}

std::string
hex(uint64_t v)
{
    char b[17];
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
    return b;
}

// Deterministic body bytes for (key, version).
std::string
make_body(std::string_view key, uint64_t version, size_t len)
{
    std::string b(len, '\0');
    uint64_t x = fnv(key) ^ (version * 0x9e3779b97f4a7c15ull) ^ len;
    for (size_t i = 0; i < len; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = static_cast<char>(x);
    }
    return b;
}

std::string
read_body(const ObjectRef& r)
{
    std::string out;
    for (size_t i = 0; i < r.extent_count(); ++i)
        out.append(r.extent(i));
    return out;
}

// Stores body under key, in chunks of `chunk` bytes (0: one append), with
// the body's checksum as the ETag. expected: pass the length up front.
bool
put(Store& s, const std::string& key, const std::string& body, size_t chunk = 0,
    bool expected = true, const std::string& hdrs = "")
{
    std::string etag = hex(fnv(body));
    ObjectMeta m;
    m.status = 200;
    m.headers = hdrs.empty() ? std::string_view("Content-Type: text/plain\r\n")
                             : std::string_view(hdrs);
    m.etag = etag;
    m.freshness_lifetime = 60;
    StoreWriter w = s.begin_insert(key, m, expected ? body.size() : 0);
    if (!w)
        return false;
    if (chunk == 0)
        chunk = body.size() > 0 ? body.size() : 1;
    for (size_t off = 0; off < body.size(); off += chunk)
        if (!w.append(body.data() + off, std::min(chunk, body.size() - off)))
            return false;
    return w.commit();
}

bool
consistent(const ObjectRef& r)
{
    return hex(fnv(read_body(r))) == r.meta().etag;
}

bool
verify(Store& s, const std::string& name)
{
    std::string why;
    bool ok = s.verify(&why);
    tap::ok(ok, name + ": invariants hold");
    if (!ok)
        tap::diag(why);
    return ok;
}

double
now_s()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
}

void
quiet_stderr()
{
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 2);
    close(null);
}

void
test_create()
{
    std::string err;
    Store bad = Store::create(1000, 100, &err);
    tap::ok(!bad && !err.empty(), "create: a tiny memory size is refused");
    Store s = Store::create(1 << 20, 64 << 10, &err);
    tap::ok(static_cast<bool>(s), "create: 1M store");
    sj::StoreStats st = s.stats();
    tap::is(st.capacity, uint64_t{1} << 20, "create: capacity is memory");
    tap::is(st.bytes_used, uint64_t{0}, "create: nothing used");
    tap::is(s.max_object(), size_t{64} << 10, "create: max_object");
    tap::ok(st.overhead > 0 && st.overhead == s.overhead(),
            "create: overhead reported");
    verify(s, "create");
}

void
test_basic()
{
    std::string err;
    Store s = Store::create(1 << 20, 256 << 10, &err);
    std::string body = "hello, world";
    tap::ok(put(s, "example.com/a", body, 0, true,
                "Content-Type: text/plain\r\nX-A: 1\r\n"),
            "basic: insert");
    LookupStatus ls;
    ObjectRef r = s.lookup("example.com/a", &ls);
    if (!tap::ok(r && ls == LookupStatus::kHit, "basic: hit"))
        return;
    tap::is(r.key(), std::string("example.com/a"), "basic: key");
    tap::is(read_body(r), body, "basic: body");
    tap::is(r.body_size(), uint64_t{body.size()}, "basic: body size");
    tap::is(r.meta().status, uint16_t{200}, "basic: status");
    tap::is(r.meta().headers,
            std::string("Content-Type: text/plain\r\nX-A: 1\r\n"),
            "basic: headers");
    tap::is(r.meta().freshness_lifetime, int64_t{60}, "basic: lifetime");
    char part[5] = {};
    tap::is(r.copy_body(7, part, 5), size_t{5}, "basic: copy_body range");
    tap::is(std::string(part, 5), std::string("world"),
            "basic: copy_body bytes");
    r.reset();
    ObjectRef miss = s.lookup("example.com/b", &ls);
    tap::ok(!miss && ls == LookupStatus::kMiss, "basic: other key misses");
    tap::ok(!s.lookup("example.com/a2"), "basic: a longer key misses");
    tap::ok(!s.lookup("example.com/"), "basic: a prefix misses");
    tap::ok(put(s, "example.com/empty", ""), "basic: empty body");
    ObjectRef e = s.lookup("example.com/empty");
    tap::ok(e && e.body_size() == 0 && e.extent_count() == 0,
            "basic: empty body reads empty");
    e.reset();
    tap::ok(s.remove("example.com/a"), "basic: remove");
    tap::ok(!s.lookup("example.com/a"), "basic: gone after remove");
    tap::ok(!s.remove("example.com/a"), "basic: second remove finds none");
    tap::is(s.stats().objects, uint64_t{1}, "basic: one object left");

    // Many keys sharing few buckets: chains, full key comparison.
    Store t = Store::create(1 << 20, 64 << 10, &err, 64);
    int stored = 0, right = 0;
    for (int i = 0; i < 60; ++i)
        stored += put(t, "k" + std::to_string(i), "v" + std::to_string(i));
    for (int i = 0; i < 60; ++i) {
        ObjectRef x = t.lookup("k" + std::to_string(i));
        right += x && read_body(x) == "v" + std::to_string(i);
    }
    tap::is(stored, 60, "chains: 60 keys stored in 64 entries");
    tap::is(right, 60, "chains: each key finds its own object");
    verify(t, "chains");
    verify(s, "basic");
}

void
test_fill()
{
    std::string err;
    Store s = Store::create(4 << 20, 1 << 20, &err);
    uint64_t base = s.stats().bytes_used;
    std::string body = make_body("big", 1, 300000);
    tap::ok(put(s, "big", body, 1000, false),
            "fill: 300000 bytes in 1000-byte chunks, length unknown");
    ObjectRef r = s.lookup("big");
    tap::ok(r && read_body(r) == body, "fill: body intact");
    tap::ok(r.extent_count() > 1, "fill: stored in several extents");
    struct iovec iov[Store::kMaxExtents];
    size_t n = r.body_iov(150000, 100, iov, Store::kMaxExtents);
    std::string mid;
    for (size_t i = 0; i < n; ++i)
        mid.append(static_cast<char*>(iov[i].iov_base), iov[i].iov_len);
    tap::is(mid, body.substr(150000, 100), "fill: body_iov of a range");
    r.reset();

    // While filling: not served, but reported as a fill in progress.
    ObjectMeta m;
    m.status = 200;
    StoreWriter w = s.begin_insert("partial", m, 5000);
    tap::ok(static_cast<bool>(w), "fill: begin_insert");
    std::string half = make_body("partial", 1, 2500);
    tap::ok(w.append(half.data(), half.size()), "fill: append half");
    LookupStatus ls;
    tap::ok(!s.lookup("partial", &ls) && ls == LookupStatus::kFilling,
            "fill: a partial object is never served, lookup says filling");
    tap::is(s.stats().filling, uint64_t{1}, "fill: one fill in progress");
    w.abort();
    tap::ok(!s.lookup("partial", &ls) && ls == LookupStatus::kMiss,
            "fill: aborted fill is gone");
    {
        StoreWriter w2 = s.begin_insert("dropped", m, 0);
        w2.append("abc", 3);
    }
    tap::ok(!s.lookup("dropped"),
            "fill: a writer destroyed uncommitted aborts");
    tap::ok(!w.commit(), "fill: commit after abort fails");
    s.remove("big");
    tap::is(s.stats().bytes_used, base, "fill: all memory back");
    tap::is(s.stats().filling, uint64_t{0}, "fill: no fills left");

    // Purged while filling: the fill does not publish.
    StoreWriter w3 = s.begin_insert("purged", m, 3);
    w3.append("abc", 3);
    tap::ok(s.remove("purged"), "fill: purge reaches a fill in progress");
    tap::ok(!w3.commit(), "fill: a purged fill fails to commit");
    tap::ok(!s.lookup("purged"), "fill: and is not stored");
    verify(s, "fill");
}

// The fill's bytes so far, read through a follower's ref.
std::string
read_available(const ObjectRef& r)
{
    std::string out(r.available(), '\0');
    out.resize(r.copy_body(0, out.data(), out.size()));
    return out;
}

void
test_follow()
{
    std::string err;
    Store s = Store::create(4 << 20, 1 << 20, &err);
    uint64_t base = s.stats().bytes_used;
    ObjectMeta m;
    m.status = 200;
    m.headers = "Content-Type: text/plain\r\n";
    std::string body = make_body("f", 1, 200000);

    tap::ok(!s.follow("f"), "follow: nothing to follow");
    StoreWriter w = s.begin_insert("f", m, body.size());
    ObjectRef r = s.follow("f");
    tap::ok(r && r.body_size() == body.size() && r.available() == 0 &&
                r.fill_state() == sj::FillState::kFilling,
            "follow: a fill with a known length, nothing there yet");
    tap::is(std::string(r.meta().headers), std::string(m.headers),
            "follow: the fill's record");
    bool ok = true;
    for (size_t off = 0; off < body.size(); off += 30000) {
        std::string piece = body.substr(off, 30000);
        ok = ok && w.append(piece.data(), piece.size()) &&
             read_available(r) == body.substr(0, off + piece.size());
    }
    tap::ok(ok, "follow: every appended piece is readable at once");
    tap::ok(r.fill_state() == sj::FillState::kFilling,
            "follow: still filling before commit");
    tap::ok(w.commit(), "follow: commit");
    tap::ok(r.fill_state() == sj::FillState::kComplete &&
                read_available(r) == body,
            "follow: complete after commit, the whole body");
    verify(s, "follow: committed while followed");
    r.reset();
    tap::ok(static_cast<bool>(s.lookup("f")), "follow: stored as usual");
    s.remove("f");

    // Discarded while followed: the bytes stay until the follower lets go.
    StoreWriter w2 = s.begin_insert("g", m, 100000);
    std::string half = make_body("g", 1, 50000);
    w2.append(half.data(), half.size());
    ObjectRef g = s.follow("g");
    w2.abort();
    tap::ok(g.fill_state() == sj::FillState::kDiscarded &&
                read_available(g) == half,
            "follow: an aborted fill says so, its bytes still readable");
    tap::is(s.stats().dead, uint64_t{1}, "follow: the aborted fill is dead");
    verify(s, "follow: aborted while followed");
    g.reset();
    tap::is(s.stats().dead, uint64_t{0}, "follow: freed by the last unpin");

    // Purged while followed: the commit fails, the follower sees it.
    StoreWriter w3 = s.begin_insert("h", m, 3);
    ObjectRef h = s.follow("h");
    w3.append("abc", 3);
    s.remove("h");
    tap::ok(!w3.commit() && h.fill_state() == sj::FillState::kDiscarded,
            "follow: purged while followed, discarded");
    h.reset();

    // A fill of unknown length cannot be followed.
    StoreWriter w4 = s.begin_insert("u", m, 0);
    tap::ok(!s.follow("u"), "follow: not a fill of unknown length");
    w4.abort();
    tap::is(s.stats().bytes_used, base, "follow: all memory back");
    verify(s, "follow");
}

void
test_max_object()
{
    std::string err;
    Store s = Store::create(1 << 20, 10000, &err);
    ObjectMeta m;
    m.status = 200;
    tap::ok(!s.begin_insert("big", m, 10001),
            "max_object: a declared length over the limit is refused");
    StoreWriter w = s.begin_insert("big", m, 0);
    std::string chunk(4000, 'x');
    bool a = w.append(chunk.data(), chunk.size()) &&
             w.append(chunk.data(), chunk.size());
    bool b = w.append(chunk.data(), chunk.size());
    tap::ok(a && !b, "max_object: a streamed body over the limit fails");
    tap::ok(!w && !w.commit() && !s.lookup("big"),
            "max_object: and is not stored");
    tap::ok(put(s, "ok", std::string(10000, 'y')),
            "max_object: exactly max_object is stored");
    tap::ok(s.stats().refused >= 2, "max_object: refusals counted");
    tap::ok(!s.begin_insert(std::string(Store::kMaxKey + 1, 'k'), m, 1),
            "max_object: an over-long key is refused");
    verify(s, "max_object");
}

void
test_pins()
{
    std::string err;
    Store s = Store::create(1 << 20, 128 << 10, &err);
    std::string v1 = make_body("k", 1, 20000), v2 = make_body("k", 2, 30000);
    put(s, "k", v1);
    ObjectRef old = s.lookup("k");
    tap::ok(put(s, "k", v2, 777), "pins: replace a pinned object");
    ObjectRef cur = s.lookup("k");
    tap::ok(cur && read_body(cur) == v2, "pins: lookup sees the new object");
    tap::ok(read_body(old) == v1 && consistent(old),
            "pins: the old reader still reads the old bytes");
    tap::is(s.stats().dead, uint64_t{1}, "pins: old object dead, pinned");
    tap::is(s.stats().objects, uint64_t{1}, "pins: one live object");
    old.reset();
    tap::is(s.stats().dead, uint64_t{0}, "pins: freed by the last unpin");
    cur.reset();

    // Held across a fill far larger than the store: never evicted.
    put(s, "held", v1);
    ObjectRef held = s.lookup("held");
    for (int i = 0; i < 200; ++i)
        put(s, "fill" + std::to_string(i), make_body("f", i, 20000));
    tap::ok(s.stats().evictions > 0, "pins: the fill evicted objects");
    tap::ok(read_body(held) == v1, "pins: a pinned object survives eviction");
    ObjectRef again = s.lookup("held");
    tap::ok(again && read_body(again) == v1,
            "pins: and is still findable (eviction skips pinned objects)");
    again.reset();
    s.remove("held");
    tap::ok(read_body(held) == v1, "pins: purged while pinned, still readable");
    held.reset();

    // Move semantics.
    ObjectRef a = s.lookup("fill199");
    ObjectRef b = std::move(a);
    tap::ok(!a && b && consistent(b), "pins: a moved ref keeps the pin");
    b = ObjectRef();
    verify(s, "pins");

    // Every pin slot taken: lookups degrade to misses, never crash.
    put(s, "hot", "x");
    std::vector<ObjectRef> refs;
    refs.reserve(Store::kPinsPerProc);
    for (uint32_t i = 0; i < Store::kPinsPerProc; ++i)
        refs.push_back(s.lookup("hot"));
    LookupStatus ls;
    ObjectRef extra = s.lookup("hot", &ls);
    tap::ok(!extra && ls == LookupStatus::kPinsExhausted,
            "pins: pin table full reports kPinsExhausted");
    refs.clear();
    tap::ok(static_cast<bool>(s.lookup("hot")), "pins: usable again");
    verify(s, "pins exhausted");
}

void
test_update_meta()
{
    std::string err;
    Store s = Store::create(1 << 20, 128 << 10, &err);
    std::string body = make_body("u", 1, 5000);
    put(s, "u", body, 0, true,
        "Content-Type: text/plain\r\nCache-Control: max-age=60\r\n");
    std::string etag = hex(fnv(body));
    ObjectMeta m;
    m.status = 200;
    m.headers = "Content-Type: text/plain\r\n";
    m.etag = etag;
    m.response_time = 1234;
    m.freshness_lifetime = 120;
    tap::ok(s.update_meta("u", m), "update_meta: in place");
    ObjectRef r = s.lookup("u");
    tap::ok(r && r.meta().response_time == 1234 &&
                r.meta().freshness_lifetime == 120 &&
                r.meta().headers == "Content-Type: text/plain\r\n" &&
                read_body(r) == body,
            "update_meta: new record, same body");
    std::string longer(3000, 'h');
    std::string hdrs = "X-Long: " + longer + "\r\n";
    m.headers = hdrs;
    m.response_time = 5678;
    tap::ok(s.update_meta("u", m), "update_meta: a bigger record while pinned");
    tap::ok(r.meta().response_time == 1234 && read_body(r) == body,
            "update_meta: the reader keeps the old record");
    r.reset();
    ObjectRef r2 = s.lookup("u");
    tap::ok(r2 && r2.meta().response_time == 5678 &&
                r2.meta().headers == hdrs && read_body(r2) == body,
            "update_meta: the copy has the new record and the body");
    tap::ok(!s.update_meta("nothing", m), "update_meta: unknown key");
    r2.reset();
    // A 304 for a response that has since been replaced changes nothing.
    ObjectMeta was;
    was.response_time = 1234;  // the record before the last update
    was.etag = etag;
    ObjectMeta other = m;
    other.response_time = 9999;
    tap::ok(!s.update_meta("u", other, &was),
            "update_meta: refused for a replaced response");
    ObjectRef r3 = s.lookup("u");
    tap::ok(r3 && r3.meta().response_time == 5678,
            "update_meta: the replacement is left alone");
    r3.reset();
    was.response_time = 5678;
    tap::ok(s.update_meta("u", other, &was),
            "update_meta: applied to the response it names");
    verify(s, "update_meta");
}

void
test_bans()
{
    std::string err;
    Store s = Store::create(1 << 20, 128 << 10, &err);
    put(s, "a.example/x", "1");
    put(s, "a.example/y", "2");
    put(s, "a.example.org/z", "3");
    put(s, "b.example/x", "4");
    std::map<std::string, uint64_t> listed;
    s.for_each([&](const sj::ObjectInfo& o) {
        listed[std::string(o.key)] = o.body_size;
    });
    tap::is(listed.size(), size_t{4}, "for_each: lists every object");
    tap::is(s.remove_prefix("a.example/"), size_t{2}, "ban: prefix removes 2");
    tap::ok(!s.lookup("a.example/x") && !s.lookup("a.example/y"),
            "ban: banned objects gone");
    tap::ok(s.lookup("a.example.org/z") && s.lookup("b.example/x"),
            "ban: others stay");
    size_t n = s.remove_if([](const sj::ObjectInfo& o) {
        return o.key.find("/x") != o.key.npos;
    });
    tap::is(n, size_t{1}, "ban: predicate removes 1");
    tap::ok(!s.lookup("b.example/x"), "ban: predicate match gone");
    verify(s, "bans");
}

void
test_bound()
{
    std::string err;
    const size_t mem = 1 << 20;
    Store s = Store::create(mem, 200 << 10, &err);
    uint64_t max_used = 0;
    uint64_t written = 0;
    uint32_t x = 12345;
    int stored = 0;
    for (int i = 0; written < 8 * mem; ++i) {
        x = x * 1103515245 + 12345;
        size_t len = (x >> 8) % (120 << 10);
        std::string key = "obj" + std::to_string(i);
        stored += put(s, key, make_body(key, 1, len), 3000, (i % 3) != 0);
        written += len;
        max_used = std::max(max_used, s.stats().bytes_used);
    }
    sj::StoreStats st = s.stats();
    tap::ok(stored > 100, "bound: objects stored under a fill 8x the store");
    tap::ok(st.evictions > 50,
            "bound: evictions counted (" + std::to_string(st.evictions) + ")");
    tap::ok(max_used <= mem, "bound: bytes used never over memory (" +
                                 std::to_string(max_used) + ")");
    tap::ok(st.bytes_used > mem / 2, "bound: the store is well used (" +
                                         std::to_string(st.bytes_used) + ")");
    int good = 0, seen = 0;
    for (int i = 0; i < 2000; ++i) {
        ObjectRef r = s.lookup("obj" + std::to_string(i));
        if (r) {
            ++seen;
            good += consistent(r);
        }
    }
    tap::ok(seen > 0 && good == seen, "bound: every surviving object intact");
    tap::diag("overhead for 1M: " + std::to_string(st.overhead) + " bytes");
    verify(s, "bound");
}

void
test_sieve()
{
    // 4 KiB blocks in a 400 KiB store: room for about 100 objects. A hot set
    // of 20, then a stream of 3000 one-hit keys with the hot set hit once
    // every 150 inserts: more distinct keys between two hits than the store
    // holds, so an LRU of the same size loses every hot key each round.
    std::string err;
    Store s = Store::create(400 << 10, 64 << 10, &err);
    const int kHot = 20, kGap = 150, kScan = 3000;
    std::string body(3500, 'b');
    std::list<std::string> lru;
    std::unordered_map<std::string, std::list<std::string>::iterator> where;
    size_t lru_cap = 0;
    auto lru_touch = [&](const std::string& k) {
        bool hit = where.count(k) != 0;
        if (hit)
            lru.erase(where[k]);
        lru.push_front(k);
        where[k] = lru.begin();
        while (lru.size() > lru_cap) {
            where.erase(lru.back());
            lru.pop_back();
        }
        return hit;
    };
    for (int i = 0; i < kHot; ++i)
        put(s, "hot" + std::to_string(i), body);
    int hot_miss = 0, lru_hot_miss = 0, rounds = 0;
    for (int i = 0; i < kScan; ++i) {
        put(s, "scan" + std::to_string(i), body);
        if (i == 200)
            lru_cap = s.stats().objects;  // the store's capacity in objects
        if (i % kGap == 0) {
            ++rounds;
            for (int h = 0; h < kHot; ++h) {
                std::string k = "hot" + std::to_string(h);
                bool lru_hit = lru_cap > 0 ? lru_touch(k) : true;
                ObjectRef r = s.lookup(k);
                if (i > 200) {
                    hot_miss += !r;
                    lru_hot_miss += !lru_hit;
                }
                if (!r)
                    put(s, k, body);
            }
        }
        if (lru_cap > 0)
            lru_touch("scan" + std::to_string(i));
    }
    tap::diag("sieve: capacity " + std::to_string(lru_cap) + " objects, " +
              std::to_string(rounds) + " rounds, hot misses " +
              std::to_string(hot_miss) + ", an LRU model's " +
              std::to_string(lru_hot_miss));
    tap::ok(lru_cap > 60 && lru_cap < kGap,
            "sieve: store holds fewer objects "
            "than the gap between hits");
    tap::is(hot_miss, 0, "sieve: the hot set survives the scan");
    tap::ok(lru_hot_miss > 10 * kHot, "sieve: where an LRU loses it");
    tap::ok(s.stats().evictions > 2000, "sieve: the scan was evicted");
    verify(s, "sieve");
}

// Counters the children of the concurrency test report through.
struct Shared {
    std::atomic<uint64_t> hits, misses, inserts, bad, removes, updates;
};

void
test_concurrency()
{
    std::string err;
    Store s = Store::create(2 << 20, 256 << 10, &err, 2048);
    auto* sh = static_cast<Shared*>(
        mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    new (sh) Shared();
    const int kProcs = 4;
    const double kSeconds = 2.0;
    std::vector<pid_t> pids;
    for (int p = 0; p < kProcs; ++p) {
        pid_t pid = fork();
        if (pid == 0) {
            quiet_stderr();
            if (!s.join())
                _exit(3);
            uint64_t x = 88172645463325252ull + p;
            double end = now_s() + kSeconds;
            uint64_t ops = 0;
            while (now_s() < end && ops < 5000000) {
                ++ops;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                std::string key = "key" + std::to_string(x % 300);
                int op = static_cast<int>((x >> 20) % 100);
                if (op < 60) {
                    ObjectRef r = s.lookup(key);
                    if (!r) {
                        sh->misses++;
                        continue;
                    }
                    sh->hits++;
                    if (!consistent(r))
                        sh->bad++;
                } else if (op < 92) {
                    size_t len = (x >> 32) % (24 << 10);
                    std::string body = make_body(key, x, len);
                    size_t chunk = 1 + (x >> 40) % 9000;
                    bool known = (x >> 50) & 1;
                    if ((x >> 51) % 10 == 0) {
                        // A truncated origin response: aborted.
                        ObjectMeta m;
                        m.status = 200;
                        StoreWriter w = s.begin_insert(key, m, len + 10);
                        if (w)
                            w.append(body.data(), body.size());
                        continue;
                    }
                    if (put(s, key, body, chunk, known))
                        sh->inserts++;
                } else if (op < 96) {
                    s.remove(key);
                    sh->removes++;
                } else {
                    ObjectRef r = s.lookup(key);
                    if (!r)
                        continue;
                    std::string etag(r.meta().etag);
                    std::string lm(r.meta().last_modified);
                    ObjectMeta seen;
                    seen.response_time = r.meta().response_time;
                    seen.etag = etag;
                    seen.last_modified = lm;
                    std::string hdrs = "X-Update: " + std::to_string(x) +
                                       "\r\n" +
                                       std::string((x >> 30) % 600, 'u');
                    r.reset();
                    ObjectMeta m;
                    m.status = 200;
                    m.etag = etag;
                    m.response_time = seen.response_time;
                    m.headers = hdrs;
                    // The key may be replaced by another process at any
                    // moment: update_meta must then leave the new object
                    // alone, or its readers would see this etag on another
                    // body and flag it.
                    if (s.update_meta(key, m, &seen))
                        sh->updates++;
                }
            }
            _exit(0);
        }
        pids.push_back(pid);
    }
    int clean = 0;
    for (pid_t pid : pids) {
        int st = 0;
        waitpid(pid, &st, 0);
        clean += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    tap::is(clean, kProcs, "concurrency: every process ran to the end");
    tap::diag("concurrency: hits " + std::to_string(sh->hits.load()) +
              " misses " + std::to_string(sh->misses.load()) + " inserts " +
              std::to_string(sh->inserts.load()) + " updates " +
              std::to_string(sh->updates.load()) + " evictions " +
              std::to_string(s.stats().evictions));
    tap::ok(sh->hits > 1000 && sh->inserts > 1000,
            "concurrency: many hits and inserts");
    tap::is(sh->bad.load(), uint64_t{0},
            "concurrency: every object read matched its checksum");
    tap::ok(s.stats().evictions > 0, "concurrency: evictions happened");
    tap::ok(s.stats().bytes_used <= s.stats().capacity,
            "concurrency: memory within the bound");
    // Children exited without releasing anything: their slots are stale.
    for (pid_t pid : pids)
        s.release_process(pid);
    verify(s, "concurrency");
    int good = 0, seen = 0;
    for (int i = 0; i < 300; ++i) {
        ObjectRef r = s.lookup("key" + std::to_string(i));
        if (r) {
            ++seen;
            good += consistent(r);
        }
    }
    tap::ok(good == seen, "concurrency: everything left is intact (" +
                              std::to_string(seen) + " objects)");
    munmap(sh, sizeof(Shared));
}

pid_t
child(Store& s, const std::function<void()>& fn)
{
    pid_t pid = fork();
    if (pid == 0) {
        quiet_stderr();
        if (!s.join())
            _exit(3);
        fn();
        raise(SIGKILL);
        _exit(4);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? pid : -1;
}

void
test_killed()
{
    std::string err;
    Store s = Store::create(1 << 20, 128 << 10, &err);
    put(s, "k", make_body("k", 1, 10000));
    const char* names[] = {"eviction", "stripe", "allocator"};
    for (int which = 0; which < 3; ++which) {
        std::string n = std::string("killed holding the ") + names[which] +
                        " lock";
        uint64_t rec = s.stats().recoveries;
        pid_t pid = child(s, [&] { s.debug_hold_lock(which, "k"); });
        tap::ok(pid > 0, n + ": child died");
        ObjectRef r = s.lookup("k");
        tap::ok(r && consistent(r), n + ": lookup works");
        r.reset();
        tap::ok(put(s, "k", make_body("k", which + 2, 10000)) &&
                    put(s, "other" + std::to_string(which), "x"),
                n + ": inserts work");
        tap::ok(s.stats().recoveries > rec, n + ": repair counted");
        s.release_process(pid);
        verify(s, n);
    }
    // The eviction lock repair runs on the next eviction-side lock.
    tap::ok(s.remove("other0") && s.stats().recoveries >= 3,
            "killed: every repair ran");

    // A reader killed holding a pin: the object is purged meanwhile.
    uint64_t base = s.stats().bytes_used;
    put(s, "pinned", make_body("p", 1, 50000));
    pid_t pid = child(s, [&] {
        ObjectRef r = s.lookup("pinned");
        if (!r)
            _exit(5);
        raise(SIGKILL);
    });
    tap::ok(pid > 0, "pin: child died holding a pin");
    s.remove("pinned");
    tap::is(s.stats().dead, uint64_t{1}, "pin: the purged object waits");
    verify(s, "pin before release");
    s.release_process(pid);
    tap::is(s.stats().dead, uint64_t{0}, "pin: freed once the pid is released");
    tap::is(s.stats().bytes_used, base, "pin: no memory leaked");

    // The same found by reap_dead, without the parent naming the pid.
    put(s, "pinned2", "abc");
    pid = child(s, [&] {
        ObjectRef r = s.lookup("pinned2");
        raise(SIGKILL);
    });
    s.remove("pinned2");
    s.reap_dead();
    tap::is(s.stats().dead, uint64_t{0}, "pin: reap_dead finds dead pids");

    // A writer killed mid-fill, holding the allocator lock too.
    base = s.stats().bytes_used;
    pid = child(s, [&] {
        ObjectMeta m;
        m.status = 200;
        StoreWriter w = s.begin_insert("half", m, 100000);
        std::string b = make_body("half", 1, 60000);
        w.append(b.data(), b.size());
        s.debug_hold_lock(2, "");
        raise(SIGKILL);
    });
    tap::ok(pid > 0, "fill: child died mid-fill");
    LookupStatus ls;
    tap::ok(!s.lookup("half", &ls) && ls == LookupStatus::kFilling,
            "fill: the dead fill is never served");
    tap::ok(put(s, "after", "y"), "fill: the store still takes inserts");
    ObjectRef fol = s.follow("half");
    tap::ok(fol && fol.available() == 60000 &&
                read_available(fol) == make_body("half", 1, 60000),
            "fill: a follower reads what the dead writer appended");
    s.release_process(pid);
    tap::ok(!s.lookup("half", &ls) && ls == LookupStatus::kMiss,
            "fill: discarded once the pid is released");
    tap::ok(fol.fill_state() == sj::FillState::kDiscarded &&
                read_available(fol) == make_body("half", 1, 60000),
            "fill: the follower sees it discarded, its bytes intact");
    verify(s, "killed: a discarded fill still followed");
    fol.reset();
    s.remove("after");
    tap::is(s.stats().bytes_used, base, "fill: its memory came back");
    verify(s, "killed");
}

}  // namespace

int
main()
{
    test_create();
    test_basic();
    test_fill();
    test_follow();
    test_max_object();
    test_pins();
    test_update_meta();
    test_bans();
    test_bound();
    test_sieve();
    test_concurrency();
    test_killed();
    return tap::done_testing();
}
