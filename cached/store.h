#pragma once
// cached's object store: one cache in shared memory, shared by every worker.
//
// The parent creates it before forking, so all workers map the same pages at
// the same address and the store outlives any one worker. Inside the region
// there are no pointers, only offsets and indexes, and every structure can be
// rebuilt from the entry array (see "Recovery" below).
//
// Layout of the region (sizes fixed at create(), reported by overhead()):
//
//   Header      counters, locks (one eviction lock, kStripes stripe locks,
//               one allocator lock), the SIEVE queue ends and hand
//   Procs       kMaxProcs process slots, each a pid and a table of
//               kPinsPerProc pins
//   Buckets     the hash table: the first entry of each chain
//   Entries     a fixed array of entry records (state, hash, chain link,
//               SIEVE links, pin count, the head block)
//   Tags        one byte per 256-byte unit of the data area (the buddy
//               allocator's block headers)
//   Data        `memory` bytes: object heads and bodies, allocated by a
//               binary buddy allocator in blocks of 256 B to 4 MiB
//
// An object is a head block (the metadata record, the key, the stored header
// bytes, up to kMaxExtents body extents) and its body extents. The head
// block's slack is the first extent, so a small object is one block; a
// large one is a few blocks of up to 4 MiB, each contiguous. Used memory
// (bytes_used) is the sum of allocated blocks and never exceeds `memory`.
//
// Entry states (Entry::state):
//   free     on the entry free list; owns nothing
//   filling  in its hash chain, not in the SIEVE queue, owned by the writer's
//            process slot; never returned by lookup(), but may be pinned by
//            follow(); a discarded fill that is pinned becomes dead
//   live     in its hash chain and in the SIEVE queue; servable
//   dead     unlinked from both (replaced, purged, banned) but pinned by a
//            reader; freed by the last unpin
// Invariant: refcount == the number of pins naming the entry in the process
// slots, and a filling, live or dead entry owns exactly its head block and
// the extents listed in it.
//
// Locks, always taken in this order: evict -> one stripe -> alloc.
//   stripe s   the chains of the buckets b with b % kStripes == s, the state,
//              refcount and head of the entries in them, and the pin tables
//              entries of those entries (a pin is written under the stripe of
//              the pinned entry, so the two always agree)
//   evict      the SIEVE queue and hand; taken by commit, eviction, removal
//   alloc      the buddy allocator, the entry free list, the process slots
// A lookup (the hit path) takes one stripe lock, briefly, and allocates
// nothing; the body is then read without any lock, since a pinned entry's
// blocks are neither freed nor rewritten.
//
// Recovery: a worker that dies holding a lock leaves the next locker an
// EOWNERDEAD. The store then rebuilds, with every lock held, everything that
// a half-done critical section could have broken, from the entry array and
// the pin tables: entries whose head block fails its checks are dropped,
// pin counts are recounted from the slots of processes still alive, the
// hash chains and the SIEVE queue are relinked, and the allocator's free
// lists are rebuilt from the blocks the surviving entries own (blocks leaked
// by the dead worker come back). The SIEVE order is lost (the queue is
// rebuilt in entry order); objects are not.
//
// Dead workers: pins and fills are owned by a process slot. When the parent
// reaps a worker it calls release_process(pid): the slot's pins are dropped
// (so a dead entry pinned only by the dead worker is freed) and its fills are
// discarded. reap_dead() does the same for every slot whose pid no longer
// exists, for a process that does not hear about deaths.
//
// Eviction: SIEVE (Zhang et al., NSDI'24). A FIFO queue with one "visited"
// bit per object and a hand that moves from the oldest object towards the
// newest: a visited object has its bit cleared and is kept, the first
// unvisited one is evicted. A hit only sets a bit (no lock, no list move,
// unlike LRU, which would need the evict lock on every hit), and an object
// inserted by a scan and never hit again is evicted at the hand's first pass,
// while the hot set, hit between passes, survives: a scan of one-hit objects
// does not flush it, as it would flush an LRU. Pinned objects are skipped.
// S3-FIFO would resist scans as well, but needs a ghost queue and two more
// queues; SIEVE gets the same effect with one queue and one bit.

#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/shm.h"

namespace sj {

// The metadata record of a stored response. On insert the string views are
// copied into the store; from an ObjectRef they point into shared memory and
// stay valid while the ref is held. Times are seconds since the epoch; the
// RFC 9111 values are computed by the caller (cached/http_cache.h).
struct ObjectMeta {
    uint16_t status = 0;
    uint32_t flags = 0;  // the caller's bits (http_cache's kStoredXxx)
    int64_t request_time = 0;
    int64_t response_time = 0;
    int64_t date_value = 0;
    int64_t age_value = 0;
    int64_t freshness_lifetime = 0;
    int64_t stale_while_revalidate = 0;
    int64_t stale_if_error = 0;
    std::string_view headers;        // stored header lines, raw bytes
    std::string_view etag;           // "" when none
    std::string_view last_modified;  // "" when none
    std::string_view vary_names;     // the response's Vary field names
    std::string_view vary_values;    // this variant's request values
};

struct StoreStats {
    uint64_t objects = 0;     // live objects
    uint64_t filling = 0;     // fills in progress
    uint64_t dead = 0;        // unlinked, waiting for readers
    uint64_t bytes_used = 0;  // allocated data bytes, <= capacity
    uint64_t capacity = 0;    // the data area (`memory`)
    uint64_t overhead = 0;    // the region beyond the data area
    uint64_t entries = 0;     // entry slots (the most objects)
    uint64_t inserts = 0;     // commits
    uint64_t aborts = 0;      // fills discarded
    uint64_t evictions = 0;   // objects evicted for space
    uint64_t removals = 0;    // purged, banned, replaced
    uint64_t refused = 0;     // inserts refused (too big, no space)
    uint64_t recoveries = 0;  // rebuilds after a worker died
};

class Store;

// How the fill behind an ObjectRef from Store::follow() stands.
enum class FillState : uint32_t {
    kFilling = 0,
    kComplete = 1,   // committed: all body_size() bytes are there
    kDiscarded = 2,  // aborted or purged: no more bytes will come
};

// A pinned live object. While it is held the object's bytes stay valid and
// unchanged, even if the object is replaced, purged or chosen for eviction.
// Move-only; destruction unpins. Must be released in the process that
// looked it up.
class ObjectRef {
public:
    ObjectRef() noexcept = default;
    ~ObjectRef() { reset(); }
    ObjectRef(ObjectRef&& o) noexcept;
    ObjectRef& operator=(ObjectRef&& o) noexcept;
    ObjectRef(const ObjectRef&) = delete;
    ObjectRef& operator=(const ObjectRef&) = delete;

    explicit operator bool() const noexcept { return store_ != nullptr; }
    void reset() noexcept;

    std::string_view key() const noexcept;
    // The metadata record; views into shared memory.
    const ObjectMeta& meta() const noexcept { return meta_; }
    uint64_t body_size() const noexcept { return body_size_; }
    // The body is extent_count() contiguous pieces, in order.
    size_t extent_count() const noexcept;
    std::string_view extent(size_t i) const noexcept;
    // Fills up to `max` iovecs with body bytes [offset, offset+len) (clamped
    // to the body); returns how many it used. For writev of a hit or range.
    size_t body_iov(uint64_t offset, uint64_t len, struct iovec* iov,
                    size_t max) const noexcept;
    // Copies the body (tests, the memcached tier); returns bytes copied.
    size_t copy_body(uint64_t offset, char* out, size_t len) const noexcept;

    // For a ref from Store::follow(), whose body is still arriving: the
    // bytes readable now (a prefix of body_size()), and how the fill
    // stands. For any other ref: body_size() and kComplete.
    uint64_t available() const noexcept;
    FillState fill_state() const noexcept;

private:
    friend class Store;
    Store* store_ = nullptr;
    uint32_t entry_ = 0;
    uint32_t pin_ = 0;
    const void* head_ = nullptr;
    uint64_t body_size_ = 0;
    ObjectMeta meta_;
};

enum class LookupStatus : uint8_t {
    kHit,
    kMiss,
    kFilling,        // no live object, but a fill for the key is in progress
    kPinsExhausted,  // this process holds kPinsPerProc pins: treat as miss
};

// An object being filled. Append the body as it arrives, then commit() to
// publish it (replacing any live object with the same key) or abort() to
// discard it. Destroying an uncommitted writer aborts. Move-only; used by
// the process that created it.
class StoreWriter {
public:
    StoreWriter() noexcept = default;
    ~StoreWriter() { abort(); }
    StoreWriter(StoreWriter&& o) noexcept;
    StoreWriter& operator=(StoreWriter&& o) noexcept;
    StoreWriter(const StoreWriter&) = delete;
    StoreWriter& operator=(const StoreWriter&) = delete;

    explicit operator bool() const noexcept { return store_ != nullptr; }
    // Appends body bytes. False (and the fill is aborted) when the body
    // would exceed max_object or no memory can be found for it.
    bool append(const void* data, size_t len) noexcept;
    // Publishes the object. False (and it is discarded) if the key was
    // purged while filling or the process lost the fill.
    bool commit() noexcept;
    void abort() noexcept;
    uint64_t size() const noexcept { return size_; }

private:
    friend class Store;
    Store* store_ = nullptr;
    uint32_t entry_ = 0;
    uint32_t gen_ = 0;
    uint64_t size_ = 0;
    uint64_t expected_ = 0;
    // The extent being written: its address and room left.
    char* cur_ = nullptr;
    size_t cur_left_ = 0;
};

// Brief information about a stored object, for `show object` and bans.
struct ObjectInfo {
    std::string_view key;
    const ObjectMeta* meta = nullptr;
    uint64_t body_size = 0;
    bool filling = false;
};

class Store {
public:
    static constexpr uint32_t kStripes = 256;
    static constexpr uint32_t kMaxProcs = 128;
    static constexpr uint32_t kPinsPerProc = 4096;
    static constexpr uint32_t kMaxExtents = 16;
    static constexpr size_t kUnit = 256;            // smallest block
    static constexpr uint32_t kMaxOrder = 14;       // 256 B << 14 = 4 MiB
    static constexpr size_t kMinMemory = 64 << 10;  // smallest `memory`
    static constexpr size_t kMaxKey = 8 << 10;      // longest key
    static constexpr size_t kMaxHead = 256 << 10;   // largest metadata

    Store() noexcept = default;
    ~Store() = default;
    Store(Store&&) noexcept = default;
    Store& operator=(Store&&) noexcept = default;
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Creates the store in a new shared region: `memory` data bytes (at least
    // kMinMemory), objects up to `max_object` body bytes, `entries` entry
    // slots (0: one per 2 KiB of memory). The region is memory + overhead().
    // Call in the parent before fork; the calling process is joined. On
    // failure returns an empty store and sets *err.
    static Store create(size_t memory, size_t max_object, std::string* err,
                        size_t entries = 0);

    explicit operator bool() const noexcept { return static_cast<bool>(shm_); }

    // Registers the calling process (after fork, before any other call in
    // a worker). False when all kMaxProcs slots are taken by live processes.
    bool join() noexcept;

    // The live object stored under `key`, pinned; an empty ref otherwise,
    // with *status saying why (may be null). Marks the object visited.
    ObjectRef lookup(std::string_view key,
                     LookupStatus* status = nullptr) noexcept;

    // The object being filled under `key`, pinned, for a reader that
    // sends its body as it arrives (collapsed forwarding): body_size() is
    // the Content-Length the fill expects, available() what is there so
    // far. An empty ref when there is no such fill, its length is not
    // known, or this process is out of pins. If the fill is discarded
    // the pinned bytes stay valid and fill_state() says so.
    ObjectRef follow(std::string_view key) noexcept;

    // Starts storing an object under `key` (a fill). expected_size is the
    // body length if known (Content-Length), else 0. Returns an empty writer
    // when the object cannot be stored: key or metadata too large,
    // expected_size over max_object, no memory (the caller passes the
    // response through uncached).
    StoreWriter begin_insert(std::string_view key, const ObjectMeta& meta,
                             uint64_t expected_size = 0) noexcept;

    // Removes the live object (and any fill in progress, which then fails
    // to commit) stored under `key`. Readers holding it keep their copy.
    // Returns true if something was removed.
    bool remove(std::string_view key) noexcept;

    // Removes every object whose key starts with `prefix` / for which `pred`
    // is true (bans). Returns the number removed. `pred` runs under a stripe
    // lock: it must be quick and must not call the store.
    size_t remove_prefix(std::string_view prefix) noexcept;
    size_t remove_if(
        const std::function<bool(const ObjectInfo&)>& pred) noexcept;

    // Replaces the metadata of the live object under `key` (a 304
    // revalidation, RFC 9111 §4.3.4), keeping its body. In place when no
    // reader holds it and the new record fits; otherwise as a copy that
    // replaces it. False if there is no such object or no memory.
    //
    // `expect`, when given, names the stored response that was revalidated
    // (its response_time, ETag and Last-Modified): if another process has
    // replaced the object under `key` since, nothing is changed and false
    // is returned, so a 304 never dresses a different body in the headers
    // of the response it was about.
    bool update_meta(std::string_view key, const ObjectMeta& meta,
                     const ObjectMeta* expect = nullptr) noexcept;

    // Calls fn for every live and filling object, one stripe at a time
    // under its lock (fn must be quick and must not call the store).
    void for_each(
        const std::function<void(const ObjectInfo&)>& fn) const noexcept;

    StoreStats stats() const noexcept;
    size_t max_object() const noexcept;
    // The region size beyond `memory`.
    size_t overhead() const noexcept;

    // A process is gone: drops its pins and discards its fills (see the
    // header comment). Call in the parent after reaping a worker.
    void release_process(pid_t pid) noexcept;
    // release_process() for every slot whose process no longer exists.
    void reap_dead() noexcept;

    // Checks every invariant with all locks held; false with *why on the
    // first violation. For tests and `show store`.
    bool verify(std::string* why) const noexcept;

    // For tests: takes a lock (0: evict, 1: the stripe of `key`, 2: alloc)
    // and returns holding it, so that a test can die holding it.
    void debug_hold_lock(int which, std::string_view key) noexcept;

    // The region's layout: opaque outside cached/store*.cc.
    struct Impl;
    Impl* impl() const noexcept;

private:
    friend class ObjectRef;
    friend class StoreWriter;

    // Under the stripe lock of entry idx, with a free pin: pins it for
    // *ref, whose body is body_size bytes.
    void pin(uint32_t idx, uint64_t body_size, ObjectRef* ref) noexcept;

    ShmRegion shm_;
    int slot_ = -1;                  // this process's slot
    uint32_t* free_pins_ = nullptr;  // process-local stack of free pin slots
    uint32_t nfree_pins_ = 0;
    std::unique_ptr<uint32_t[]> pins_storage_;
};

}  // namespace sj
