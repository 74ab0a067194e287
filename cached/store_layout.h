#pragma once
// The layout of cached's store inside its shared region (see store.h for the
// picture, the states and the lock order). Private to cached/store*.cc.
//
// Indexes stored in shared memory are "index + 1", so that a zeroed region
// means "empty" everywhere; kNone is 0.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cached/store.h"
#include "common/shm.h"

namespace sj {

inline constexpr uint32_t kNone = 0;
inline constexpr uint64_t kStoreMagic = 0x534a53544f524531ull;  // "SJSTORE1"
inline constexpr uint32_t kHeadMagic = 0x4f424a31u;             // "OBJ1"

// kClaimed: taken off the free list by a writer (under alloc), not yet
// linked into its chain; it becomes kFilling when linked (under its stripe),
// so that a stripe repair never links an entry its writer will link again.
enum class EntryState : uint8_t { kFree = 0, kClaimed, kFilling, kLive, kDead };

// Entry::flags
inline constexpr uint8_t kEntryDoomed = 1;  // purged while filling

// One object's index record. Which lock guards which field: see store.h.
// `hash` and `head` are only changed while the entry is free (under alloc),
// so a non-free entry's stripe is stable and readable without a lock.
struct Entry {
    uint64_t hash;
    uint32_t next;   // hash chain, or the entry free list when free
    uint32_t newer;  // SIEVE queue, towards the head (newest)
    uint32_t older;  // SIEVE queue, towards the tail (oldest)
    uint32_t head;   // unit of the head block
    uint32_t refcount;
    uint32_t gen;   // bumped each time the entry is freed
    int32_t owner;  // process slot of the writer while filling
    uint8_t head_order;
    std::atomic<EntryState> state;
    std::atomic<uint8_t> visited;  // SIEVE bit, set by hits without a lock
    uint8_t flags;
};

// Entry extents are blocks of the buddy allocator, except an inline one: the
// slack of the head block after the record.
struct Extent {
    uint32_t unit;
    uint8_t order;
    uint8_t is_inline;
    uint16_t pad;
};

enum HeadString : uint32_t {
    kStrHeaders = 0,
    kStrEtag,
    kStrLastModified,
    kStrVaryNames,
    kStrVaryValues,
    kStrCount
};

// The head block: the metadata record, then the key and the strings.
// magic, nextents and extents[] are written under the alloc lock only (they
// say which blocks the object owns); the rest by the writer before the
// object is live, or in place by update_meta under the stripe lock while no
// reader holds the object.
struct Head {
    uint32_t magic;
    uint32_t key_len;
    uint32_t used;  // bytes of the block taken by the record, 8-aligned
    uint32_t nextents;
    uint64_t body_size;  // set at commit
    // For readers that follow a fill (Store::follow): the Content-Length
    // the fill expects (0: unknown), the body bytes appended so far, and
    // how the fill ended. Written by the filling process only.
    uint64_t expected;
    std::atomic<uint64_t> filled;
    std::atomic<uint32_t> fill_end;  // a FillState
    uint32_t pad2;
    Extent extents[Store::kMaxExtents];
    uint16_t status;
    uint16_t pad;
    uint32_t flags;
    int64_t request_time;
    int64_t response_time;
    int64_t date_value;
    int64_t age_value;
    int64_t freshness_lifetime;
    int64_t stale_while_revalidate;
    int64_t stale_if_error;
    uint32_t str_off[kStrCount];  // from the start of the head
    uint32_t str_len[kStrCount];
    // key bytes, then the strings
};

struct ProcSlot {
    std::atomic<int32_t> pid;  // 0: free
    uint32_t pad;
    uint32_t pins[Store::kPinsPerProc];  // entry + 1, or 0
};

struct FreeNode {
    uint32_t next;  // unit + 1
    uint32_t prev;
};

// tags[unit] for the first unit of a block; 0 inside blocks.
inline constexpr uint8_t kTagFree = 0x80;
inline constexpr uint8_t kTagUsed = 0x40;
inline constexpr uint8_t kTagOrder = 0x1f;

// The region header, at offset 0. Its member functions compute the other
// areas from `this`, so the same code works at any mapping address.
struct Store::Impl {
    uint64_t magic;
    uint64_t region_size;
    uint64_t memory;  // data area bytes: nunits * kUnit
    uint64_t max_object;
    uint32_t nentries;
    uint32_t nbuckets;  // a power of two, >= kStripes
    uint32_t nunits;
    uint32_t pad0;
    uint64_t off_procs, off_buckets, off_entries, off_tags, off_data;

    std::atomic<uint64_t> inserts, aborts, evictions, removals, refused,
        recoveries;
    std::atomic<uint64_t> nobjects, nfilling, ndead;

    // Under alloc.
    uint64_t bytes_used;
    uint32_t entry_free;                // entry + 1
    uint32_t free_head[kMaxOrder + 1];  // unit + 1

    // Under evict.
    uint32_t q_head;  // newest
    uint32_t q_tail;  // oldest
    uint32_t hand;

    ShmMutex evict_lock;
    ShmMutex alloc_lock;
    ShmMutex stripes[kStripes];

    char* base() noexcept { return reinterpret_cast<char*>(this); }
    ProcSlot* procs() noexcept
    {
        return reinterpret_cast<ProcSlot*>(base() + off_procs);
    }
    uint32_t* buckets() noexcept
    {
        return reinterpret_cast<uint32_t*>(base() + off_buckets);
    }
    Entry* entries() noexcept
    {
        return reinterpret_cast<Entry*>(base() + off_entries);
    }
    Entry& entry(uint32_t i) noexcept { return entries()[i]; }
    uint8_t* tags() noexcept
    {
        return reinterpret_cast<uint8_t*>(base() + off_tags);
    }
    char* data() noexcept { return base() + off_data; }
    char* unit_ptr(uint32_t unit) noexcept
    {
        return data() + static_cast<size_t>(unit) * kUnit;
    }
    Head* head(const Entry& e) noexcept
    {
        return reinterpret_cast<Head*>(unit_ptr(e.head));
    }
    uint32_t bucket_of(uint64_t hash) const noexcept
    {
        return static_cast<uint32_t>(hash) & (nbuckets - 1);
    }
    ShmMutex& stripe_of(uint64_t hash) noexcept
    {
        return stripes[bucket_of(hash) % kStripes];
    }
    uint32_t stripe_index(uint64_t hash) const noexcept
    {
        return bucket_of(hash) % kStripes;
    }

    // Locking with repair: each takes the lock and, if its previous owner
    // died inside it, repairs what that lock guards before returning.
    void lock_evict() noexcept;
    void lock_stripe(uint32_t s) noexcept;
    void lock_alloc() noexcept;

    // Repairs (store_repair.cc); each runs with its lock held.
    void repair_stripe(uint32_t s) noexcept;
    void repair_queue() noexcept;
    void repair_alloc() noexcept;

    // The buddy allocator, under alloc. alloc_block returns unit + 1 or
    // kNone; it takes the smallest free block of an order >= `order`, or
    // else the largest of an order >= min_order.
    // *got is the order of the block returned.
    uint32_t alloc_block(uint32_t order, uint32_t min_order,
                         uint32_t* got) noexcept;
    void free_block(uint32_t unit, uint32_t order) noexcept;
    void free_list_push(uint32_t unit, uint32_t order) noexcept;
    void free_list_remove(uint32_t unit, uint32_t order) noexcept;
    // Puts [first, end) units on the free lists as aligned blocks.
    void free_range(uint32_t first, uint32_t end) noexcept;

    // Under alloc (the caller also holds the entry's stripe if the entry was
    // ever linked): frees the entry and every block it owns.
    void free_entry(uint32_t idx) noexcept;
    // Under alloc: the blocks an entry owns, as (unit, order) pairs.
    template <typename F>
    void for_each_block(const Entry& e, F fn) noexcept;

    // Under the entry's stripe: unlinks entry idx from its hash chain.
    void chain_unlink(uint32_t idx) noexcept;
    // Under the entry's stripe: discards a filling entry. Unlinked, and
    // freed, or dead until its followers unpin it.
    void drop_fill(uint32_t idx) noexcept;
    // Under evict: the SIEVE queue.
    void queue_push(uint32_t idx) noexcept;
    void queue_remove(uint32_t idx) noexcept;
    // Under evict and the entry's stripe: takes a live entry out of service
    // (chain, queue) and frees it, or marks it dead if it is pinned.
    void retire(uint32_t idx) noexcept;
    // Evicts one unpinned live object chosen by SIEVE; takes evict, a
    // stripe and alloc itself (the caller holds no lock). False if every
    // object is pinned or there are none.
    bool evict_one() noexcept;
    // Frees what the process in slot k held: its pins and its fills.
    // The caller holds no lock.
    void release_slot(uint32_t k) noexcept;
};

template <typename F>
void
Store::Impl::for_each_block(const Entry& e, F fn) noexcept
{
    fn(e.head, e.head_order);
    const Head* h = head(e);
    if (h->magic != kHeadMagic)
        return;
    uint32_t n = h->nextents <= kMaxExtents ? h->nextents : 0;
    for (uint32_t i = 0; i < n; ++i)
        if (!h->extents[i].is_inline)
            fn(h->extents[i].unit, h->extents[i].order);
}

inline size_t
block_bytes(uint32_t order) noexcept
{
    return Store::kUnit << order;
}

// The smallest order whose block holds `bytes`; kMaxOrder + 1 if none.
inline uint32_t
order_for(size_t bytes) noexcept
{
    uint32_t o = 0;
    while (o <= Store::kMaxOrder && block_bytes(o) < bytes)
        ++o;
    return o;
}

uint64_t store_hash(std::string_view key) noexcept;

}  // namespace sj
