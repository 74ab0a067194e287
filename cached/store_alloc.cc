// cached's store: the buddy allocator inside the region, the structures
// shared by the operations (chains, SIEVE queue, entry release), and the
// repairs that run when a worker died holding a lock.

#include <cstring>
#include <vector>

#include "cached/store_layout.h"
#include "common/check.h"
#include "common/log.h"

namespace sj {

uint64_t
store_hash(std::string_view key) noexcept
{
    // 8 bytes a step, then murmur3's finalizer: keys are short, so this
    // costs a few nanoseconds per lookup and spreads well over the buckets.
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (key.size() * 0xff51afd7ed558ccdull);
    const char* p = key.data();
    size_t n = key.size();
    while (n >= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

// ---------------------------------------------------------------- locks

void
Store::Impl::lock_evict() noexcept
{
    if (evict_lock.lock()) {
        log_warn(
            "store: a worker died holding the eviction lock, "
            "rebuilding the eviction queue");
        recoveries.fetch_add(1, std::memory_order_relaxed);
        repair_queue();
    }
}

void
Store::Impl::lock_stripe(uint32_t s) noexcept
{
    if (stripes[s].lock()) {
        log_warn(
            "store: a worker died holding stripe lock %u, "
            "relinking its chains and recounting its pins",
            s);
        recoveries.fetch_add(1, std::memory_order_relaxed);
        repair_stripe(s);
    }
}

void
Store::Impl::lock_alloc() noexcept
{
    if (alloc_lock.lock()) {
        log_warn(
            "store: a worker died holding the allocator lock, "
            "rebuilding the free lists");
        recoveries.fetch_add(1, std::memory_order_relaxed);
        repair_alloc();
    }
}

// ---------------------------------------------------------------- buddy

void
Store::Impl::free_list_push(uint32_t unit, uint32_t order) noexcept
{
    auto* n = reinterpret_cast<FreeNode*>(unit_ptr(unit));
    n->prev = kNone;
    n->next = free_head[order];
    if (n->next != kNone)
        reinterpret_cast<FreeNode*>(unit_ptr(n->next - 1))->prev = unit + 1;
    free_head[order] = unit + 1;
    tags()[unit] = static_cast<uint8_t>(kTagFree | order);
}

void
Store::Impl::free_list_remove(uint32_t unit, uint32_t order) noexcept
{
    auto* n = reinterpret_cast<FreeNode*>(unit_ptr(unit));
    if (n->prev != kNone)
        reinterpret_cast<FreeNode*>(unit_ptr(n->prev - 1))->next = n->next;
    else
        free_head[order] = n->next;
    if (n->next != kNone)
        reinterpret_cast<FreeNode*>(unit_ptr(n->next - 1))->prev = n->prev;
    tags()[unit] = 0;
}

uint32_t
Store::Impl::alloc_block(uint32_t order, uint32_t min_order,
                         uint32_t* got) noexcept
{
    CHECK(order <= kMaxOrder && min_order <= order);
    uint32_t o = order;
    while (o <= kMaxOrder && free_head[o] == kNone)
        ++o;
    if (o > kMaxOrder) {
        // Nothing big enough: the largest smaller block that will do.
        o = order;
        while (o > min_order && free_head[o] == kNone)
            --o;
        if (free_head[o] == kNone)
            return kNone;
        order = o;
    }
    uint32_t unit = free_head[o] - 1;
    free_list_remove(unit, o);
    // Split down to the size wanted, freeing the upper halves.
    while (o > order) {
        --o;
        free_list_push(unit + (1u << o), o);
    }
    tags()[unit] = static_cast<uint8_t>(kTagUsed | order);
    bytes_used += block_bytes(order);
    *got = order;
    return unit + 1;
}

void
Store::Impl::free_block(uint32_t unit, uint32_t order) noexcept
{
    CHECK(unit < nunits && tags()[unit] == (kTagUsed | order));
    bytes_used -= block_bytes(order);
    tags()[unit] = 0;
    while (order < kMaxOrder) {
        uint32_t buddy = unit ^ (1u << order);
        if (buddy + (1u << order) > nunits ||
            tags()[buddy] != (kTagFree | order))
            break;
        free_list_remove(buddy, order);
        unit = unit < buddy ? unit : buddy;
        ++order;
    }
    free_list_push(unit, order);
}

void
Store::Impl::free_range(uint32_t first, uint32_t end) noexcept
{
    // Greedy aligned decomposition: at each unit the largest block that is
    // aligned there and fits, which gives the fully merged buddy blocks.
    uint32_t u = first;
    while (u < end) {
        uint32_t o = kMaxOrder;
        while (o > 0 && ((u & ((1u << o) - 1)) != 0 || u + (1u << o) > end))
            --o;
        free_list_push(u, o);
        u += 1u << o;
    }
}

// ---------------------------------------------------------------- entries

void
Store::Impl::free_entry(uint32_t idx) noexcept
{
    Entry& e = entry(idx);
    EntryState st = e.state.load(std::memory_order_relaxed);
    CHECK(st != EntryState::kFree);
    if (st == EntryState::kLive)
        nobjects.fetch_sub(1, std::memory_order_relaxed);
    else if (st == EntryState::kFilling || st == EntryState::kClaimed)
        nfilling.fetch_sub(1, std::memory_order_relaxed);
    else
        ndead.fetch_sub(1, std::memory_order_relaxed);
    // The state first, then the blocks: repair_alloc trusts the entries, so
    // a death in between must leave an entry that claims nothing.
    uint32_t blocks[2 * kMaxExtents + 2];
    uint32_t nb = 0;
    for_each_block(e, [&](uint32_t unit, uint32_t order) {
        blocks[nb++] = unit;
        blocks[nb++] = order;
    });
    Head* h = head(e);
    h->magic = 0;
    e.state.store(EntryState::kFree, std::memory_order_release);
    e.refcount = 0;
    e.flags = 0;
    e.owner = -1;
    e.newer = e.older = kNone;
    ++e.gen;
    for (uint32_t i = 0; i < nb; i += 2)
        free_block(blocks[i], blocks[i + 1]);
    e.next = entry_free;
    entry_free = idx + 1;
}

void
Store::Impl::chain_unlink(uint32_t idx) noexcept
{
    Entry& e = entry(idx);
    uint32_t* link = &buckets()[bucket_of(e.hash)];
    while (*link != kNone) {
        if (*link == idx + 1) {
            *link = e.next;
            e.next = kNone;
            return;
        }
        link = &entry(*link - 1).next;
    }
}

void
Store::Impl::drop_fill(uint32_t idx) noexcept
{
    Entry& e = entry(idx);
    chain_unlink(idx);
    head(e)->fill_end.store(static_cast<uint32_t>(FillState::kDiscarded),
                            std::memory_order_release);
    if (e.refcount == 0) {
        lock_alloc();
        free_entry(idx);
        alloc_lock.unlock();
    } else {
        e.owner = -1;
        e.state.store(EntryState::kDead, std::memory_order_release);
        nfilling.fetch_sub(1, std::memory_order_relaxed);
        ndead.fetch_add(1, std::memory_order_relaxed);
    }
}

void
Store::Impl::queue_push(uint32_t idx) noexcept
{
    Entry& e = entry(idx);
    e.newer = kNone;
    e.older = q_head;
    if (q_head != kNone)
        entry(q_head - 1).newer = idx + 1;
    q_head = idx + 1;
    if (q_tail == kNone)
        q_tail = idx + 1;
}

void
Store::Impl::queue_remove(uint32_t idx) noexcept
{
    Entry& e = entry(idx);
    if (hand == idx + 1)
        hand = e.newer;  // kNone wraps to the tail
    if (e.newer != kNone)
        entry(e.newer - 1).older = e.older;
    else
        q_head = e.older;
    if (e.older != kNone)
        entry(e.older - 1).newer = e.newer;
    else
        q_tail = e.newer;
    e.newer = e.older = kNone;
}

void
Store::Impl::retire(uint32_t idx) noexcept
{
    Entry& e = entry(idx);
    CHECK(e.state.load(std::memory_order_relaxed) == EntryState::kLive);
    chain_unlink(idx);
    queue_remove(idx);
    if (e.refcount == 0) {
        lock_alloc();
        free_entry(idx);
        alloc_lock.unlock();
    } else {
        e.state.store(EntryState::kDead, std::memory_order_release);
        nobjects.fetch_sub(1, std::memory_order_relaxed);
        ndead.fetch_add(1, std::memory_order_relaxed);
    }
}

// ---------------------------------------------------------------- repairs

namespace {

bool
head_ok(Store::Impl* im, const Entry& e) noexcept
{
    if (e.head >= im->nunits || e.head_order > Store::kMaxOrder ||
        e.head + (1u << e.head_order) > im->nunits)
        return false;
    const Head* h = im->head(e);
    return h->magic == kHeadMagic && h->nextents <= Store::kMaxExtents &&
           h->used <= block_bytes(e.head_order) &&
           sizeof(Head) + h->key_len <= h->used;
}

}  // namespace

void
Store::Impl::repair_stripe(uint32_t s) noexcept
{
    // Chains: every filling or live entry of this stripe, relinked. The
    // state of a non-free entry changes only under its stripe (and the
    // transitions to and from free also under alloc, which we do not need:
    // an entry becoming free under alloc is unlinked under its stripe
    // first, which we hold).
    uint32_t* b = buckets();
    for (uint32_t i = s; i < nbuckets; i += kStripes)
        b[i] = kNone;
    for (uint32_t i = 0; i < nentries; ++i) {
        Entry& e = entry(i);
        EntryState st = e.state.load(std::memory_order_acquire);
        if (st == EntryState::kFree || stripe_index(e.hash) != s)
            continue;
        e.refcount = 0;
        if (st == EntryState::kFilling || st == EntryState::kLive) {
            e.next = b[bucket_of(e.hash)];
            b[bucket_of(e.hash)] = i + 1;
        }
    }
    // Pins: recounted from every slot, live or not yet released.
    ProcSlot* p = procs();
    for (uint32_t k = 0; k < kMaxProcs; ++k) {
        if (p[k].pid.load(std::memory_order_acquire) == 0)
            continue;
        for (uint32_t j = 0; j < kPinsPerProc; ++j) {
            uint32_t pin = p[k].pins[j];
            if (pin == kNone || pin > nentries)
                continue;
            Entry& e = entry(pin - 1);
            if (e.state.load(std::memory_order_acquire) != EntryState::kFree &&
                stripe_index(e.hash) == s)
                ++e.refcount;
        }
    }
    // Dead entries nobody pins any more.
    for (uint32_t i = 0; i < nentries; ++i) {
        Entry& e = entry(i);
        if (e.state.load(std::memory_order_acquire) == EntryState::kDead &&
            stripe_index(e.hash) == s && e.refcount == 0) {
            lock_alloc();
            free_entry(i);
            alloc_lock.unlock();
        }
    }
}

void
Store::Impl::repair_queue() noexcept
{
    // The queue holds exactly the live entries, and an entry becomes or
    // stops being live only under evict, which we hold.
    q_head = q_tail = hand = kNone;
    for (uint32_t i = 0; i < nentries; ++i) {
        Entry& e = entry(i);
        e.newer = e.older = kNone;
        if (e.state.load(std::memory_order_acquire) == EntryState::kLive)
            queue_push(i);
    }
}

void
Store::Impl::repair_alloc() noexcept
{
    // Which blocks are in use is known from the entries alone: an entry
    // leaves or enters the free state, and lists its blocks, only under
    // alloc, which we hold. Everything else is free.
    std::vector<uint8_t> used(nunits, 0);
    std::memset(tags(), 0, nunits);
    bytes_used = 0;
    entry_free = kNone;
    uint64_t live = 0, filling = 0, dead = 0;
    for (uint32_t i = nentries; i-- > 0;) {
        Entry& e = entry(i);
        EntryState st = e.state.load(std::memory_order_acquire);
        if (st == EntryState::kFree) {
            e.next = entry_free;
            entry_free = i + 1;
            continue;
        }
        if (!head_ok(this, e)) {
            // Cannot happen short of memory corruption; keep only what is
            // certain (the head block) and let the object be removed in
            // the ordinary way.
            log_error("store: entry %u has a damaged head", i);
        }
        if (st == EntryState::kLive)
            ++live;
        else if (st == EntryState::kDead)
            ++dead;
        else
            ++filling;
        for_each_block(e, [&](uint32_t unit, uint32_t order) {
            if (unit >= nunits || order > kMaxOrder ||
                unit + (1u << order) > nunits)
                return;
            for (uint32_t u = unit; u < unit + (1u << order); ++u)
                if (used[u])
                    return;  // claimed twice: keep the first claim
            std::memset(&used[unit], 1, 1u << order);
            tags()[unit] = static_cast<uint8_t>(kTagUsed | order);
            bytes_used += block_bytes(order);
        });
    }
    for (uint32_t o = 0; o <= kMaxOrder; ++o)
        free_head[o] = kNone;
    uint32_t u = 0;
    while (u < nunits) {
        if (used[u]) {
            ++u;
            continue;
        }
        uint32_t end = u;
        while (end < nunits && !used[end])
            ++end;
        free_range(u, end);
        u = end;
    }
    nobjects.store(live, std::memory_order_relaxed);
    nfilling.store(filling, std::memory_order_relaxed);
    ndead.store(dead, std::memory_order_relaxed);
}

}  // namespace sj
