// cached's store: the invariant checker (store.h lists the invariants),
// for the unit tests and for a future `show store` command.

#include <string>
#include <vector>

#include "cached/store.h"
#include "cached/store_layout.h"

namespace sj {

namespace {

std::string
num(uint64_t n)
{
    return std::to_string(n);
}

}  // namespace

bool
Store::verify(std::string* why) const noexcept
{
    Impl* im = impl();
    im->lock_evict();
    for (uint32_t s = 0; s < kStripes; ++s)
        im->lock_stripe(s);
    im->lock_alloc();

    std::string err;
    auto fail = [&](const std::string& m) {
        if (err.empty())
            err = m;
    };
    uint32_t n = im->nentries;
    std::vector<uint8_t> linked(n, 0);
    uint64_t live = 0, filling = 0, dead = 0;
    for (uint32_t b = 0; b < im->nbuckets && err.empty(); ++b) {
        uint32_t steps = 0;
        for (uint32_t i = im->buckets()[b]; i != kNone;
             i = im->entry(i - 1).next) {
            if (i > n || ++steps > n) {
                fail("bucket " + num(b) + ": broken chain");
                break;
            }
            Entry& e = im->entry(i - 1);
            EntryState st = e.state.load();
            if (st != EntryState::kLive && st != EntryState::kFilling)
                fail("entry " + num(i - 1) + " in a chain in state " +
                     num(static_cast<int>(st)));
            if (im->bucket_of(e.hash) != b)
                fail("entry " + num(i - 1) + " in the wrong bucket");
            if (linked[i - 1]++)
                fail("entry " + num(i - 1) + " linked twice");
        }
    }
    for (uint32_t i = 0; i < n; ++i) {
        EntryState st = im->entry(i).state.load();
        bool should = st == EntryState::kLive || st == EntryState::kFilling;
        if (should != (linked[i] != 0))
            fail("entry " + num(i) + " chain membership wrong");
        live += st == EntryState::kLive;
        dead += st == EntryState::kDead;
        filling += st == EntryState::kFilling || st == EntryState::kClaimed;
    }
    // The SIEVE queue: exactly the live entries, links both ways.
    uint64_t queued = 0;
    uint32_t prev = kNone;
    for (uint32_t i = im->q_head; i != kNone && err.empty();
         i = im->entry(i - 1).older) {
        if (i > n || ++queued > n) {
            fail("queue broken");
            break;
        }
        Entry& e = im->entry(i - 1);
        if (e.state.load() != EntryState::kLive)
            fail("entry " + num(i - 1) + " queued but not live");
        if (e.newer != prev)
            fail("entry " + num(i - 1) + " queue back link wrong");
        prev = i;
    }
    if (prev != im->q_tail)
        fail("queue tail wrong");
    if (queued != live)
        fail("queue holds " + num(queued) + " of " + num(live) + " objects");
    // Pins.
    std::vector<uint32_t> pins(n, 0);
    for (uint32_t k = 0; k < kMaxProcs; ++k) {
        if (im->procs()[k].pid.load() == 0)
            continue;
        for (uint32_t j = 0; j < kPinsPerProc; ++j) {
            uint32_t p = im->procs()[k].pins[j];
            if (p > n)
                fail("slot " + num(k) + " pins a bad entry");
            else if (p != kNone)
                ++pins[p - 1];
        }
    }
    for (uint32_t i = 0; i < n; ++i) {
        Entry& e = im->entry(i);
        EntryState st = e.state.load();
        if (st != EntryState::kFree && e.refcount != pins[i])
            fail("entry " + num(i) + " refcount " + num(e.refcount) + " but " +
                 num(pins[i]) + " pins");
        if (st == EntryState::kFree && pins[i] != 0)
            fail("free entry " + num(i) + " is pinned");
        if (st == EntryState::kDead && e.refcount == 0)
            fail("dead entry " + num(i) + " not pinned");
    }
    // The allocator: owned blocks and free blocks tile the data area.
    std::vector<uint8_t> unit(im->nunits, 0);
    uint64_t used = 0;
    auto claim = [&](uint32_t u, uint32_t o, uint8_t what) {
        if (u >= im->nunits || o > kMaxOrder || u + (1u << o) > im->nunits ||
            (u & ((1u << o) - 1)) != 0) {
            fail("block " + num(u) + "/" + num(o) + " out of range");
            return;
        }
        for (uint32_t x = u; x < u + (1u << o); ++x)
            if (unit[x]++)
                fail("unit " + num(x) + " claimed twice");
        uint8_t tag = static_cast<uint8_t>(what | o);
        if (im->tags()[u] != tag)
            fail("block " + num(u) + " tag " + num(im->tags()[u]));
    };
    for (uint32_t i = 0; i < n; ++i) {
        Entry& e = im->entry(i);
        if (e.state.load() == EntryState::kFree)
            continue;
        if (im->head(e)->magic != kHeadMagic)
            fail("entry " + num(i) + " head magic");
        im->for_each_block(e, [&](uint32_t u, uint32_t o) {
            claim(u, o, kTagUsed);
            used += block_bytes(o);
        });
    }
    for (uint32_t o = 0; o <= kMaxOrder; ++o) {
        uint32_t steps = 0, prevf = kNone;
        for (uint32_t u = im->free_head[o]; u != kNone && err.empty();) {
            if (u > im->nunits || ++steps > im->nunits) {
                fail("free list " + num(o) + " broken");
                break;
            }
            auto* f = reinterpret_cast<FreeNode*>(im->unit_ptr(u - 1));
            if (f->prev != prevf)
                fail("free list " + num(o) + " back link");
            claim(u - 1, o, kTagFree);
            prevf = u;
            u = f->next;
        }
    }
    for (uint32_t x = 0; x < im->nunits && err.empty(); ++x)
        if (unit[x] == 0)
            fail("unit " + num(x) + " neither used nor free");
    if (used != im->bytes_used)
        fail("bytes_used " + num(im->bytes_used) + " but blocks add to " +
             num(used));
    if (im->bytes_used > im->memory)
        fail("bytes_used over capacity");
    if (live != im->nobjects.load() || filling != im->nfilling.load() ||
        dead != im->ndead.load())
        fail("object counters off: " + num(live) + "/" + num(filling) + "/" +
             num(dead) + " vs " + num(im->nobjects.load()) + "/" +
             num(im->nfilling.load()) + "/" + num(im->ndead.load()));

    im->alloc_lock.unlock();
    for (uint32_t s = kStripes; s-- > 0;)
        im->stripes[s].unlock();
    im->evict_lock.unlock();
    if (!err.empty() && why != nullptr)
        *why = err;
    return err.empty();
}

}  // namespace sj
