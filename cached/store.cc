// cached's store: creation, the hit path (lookup, pins), fills, removal,
// metadata updates, dead processes and the invariant checker. The layout,
// the allocator and the repairs are in store_layout.h / store_alloc.cc.

#include "cached/store.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "cached/store_layout.h"
#include "common/check.h"

namespace sj {

namespace {

// Evictions one allocation may cause before it gives up: a fill never
// empties the whole cache to make room for itself when memory is
// fragmented by pinned blocks.
constexpr int kMaxEvictions = 1024;
// Bodies up to this size (with their head) are stored in one block.
constexpr size_t kInlineLimit = 16 << 10;
// The first extent of a body of unknown length.
constexpr size_t kFirstExtent = 16 << 10;

size_t
align_up(size_t n, size_t a) noexcept
{
    return (n + a - 1) / a * a;
}

size_t
record_size(std::string_view key, const ObjectMeta& m) noexcept
{
    return align_up(sizeof(Head) + key.size() + m.headers.size() +
                        m.etag.size() + m.last_modified.size() +
                        m.vary_names.size() + m.vary_values.size(),
                    8);
}

// Writes key, fields and strings of a record; leaves magic, used, extents
// and body_size alone. The caller checked that record_size() fits.
void
write_record(Head* h, std::string_view key, const ObjectMeta& m) noexcept
{
    char* base = reinterpret_cast<char*>(h);
    h->key_len = static_cast<uint32_t>(key.size());
    h->status = m.status;
    h->flags = m.flags;
    h->request_time = m.request_time;
    h->response_time = m.response_time;
    h->date_value = m.date_value;
    h->age_value = m.age_value;
    h->freshness_lifetime = m.freshness_lifetime;
    h->stale_while_revalidate = m.stale_while_revalidate;
    h->stale_if_error = m.stale_if_error;
    size_t off = sizeof(Head);
    std::memcpy(base + off, key.data(), key.size());
    off += key.size();
    const std::string_view strs[kStrCount] = {
        m.headers, m.etag, m.last_modified, m.vary_names, m.vary_values};
    for (uint32_t i = 0; i < kStrCount; ++i) {
        h->str_off[i] = static_cast<uint32_t>(off);
        h->str_len[i] = static_cast<uint32_t>(strs[i].size());
        if (!strs[i].empty())
            std::memcpy(base + off, strs[i].data(), strs[i].size());
        off += strs[i].size();
    }
}

void
read_record(const Head* h, ObjectMeta* m) noexcept
{
    const char* base = reinterpret_cast<const char*>(h);
    m->status = h->status;
    m->flags = h->flags;
    m->request_time = h->request_time;
    m->response_time = h->response_time;
    m->date_value = h->date_value;
    m->age_value = h->age_value;
    m->freshness_lifetime = h->freshness_lifetime;
    m->stale_while_revalidate = h->stale_while_revalidate;
    m->stale_if_error = h->stale_if_error;
    std::string_view* strs[kStrCount] = {
        &m->headers, &m->etag, &m->last_modified, &m->vary_names,
        &m->vary_values};
    for (uint32_t i = 0; i < kStrCount; ++i)
        *strs[i] = std::string_view(base + h->str_off[i], h->str_len[i]);
}

std::string_view
head_key(const Head* h) noexcept
{
    return std::string_view(reinterpret_cast<const char*>(h) + sizeof(Head),
                            h->key_len);
}

// Extent i of an entry: where it starts and how many bytes it holds.
char*
extent_ptr(Store::Impl* im, const Entry& e, Head* h, uint32_t i,
           size_t* cap) noexcept
{
    const Extent& x = h->extents[i];
    if (x.is_inline) {
        *cap = block_bytes(e.head_order) - h->used;
        return reinterpret_cast<char*>(h) + h->used;
    }
    *cap = block_bytes(x.order);
    return im->unit_ptr(x.unit);
}

bool
key_matches(Store::Impl* im, const Entry& e, uint64_t hash,
            std::string_view key) noexcept
{
    return e.hash == hash && head_key(im->head(e)) == key;
}

}  // namespace

// ---------------------------------------------------------------- create

Store::Impl*
Store::impl() const noexcept
{
    return static_cast<Impl*>(shm_.data());
}

Store
Store::create(size_t memory, size_t max_object, std::string* err,
              size_t entries)
{
    if (memory < kMinMemory) {
        *err = "store memory must be at least " +
               std::to_string(kMinMemory >> 10) + "K";
        return Store();
    }
    size_t nunits = std::min<size_t>(memory / kUnit, 0xfffffff0u);
    if (entries == 0)
        entries = memory / 2048;
    entries = std::clamp<size_t>(entries, 64, 0x7ffffff0u);
    size_t nbuckets = kStripes;
    while (nbuckets < entries)
        nbuckets <<= 1;

    size_t off = align_up(sizeof(Impl), 64);
    size_t off_procs = off;
    off = align_up(off + kMaxProcs * sizeof(ProcSlot), 64);
    size_t off_buckets = off;
    off = align_up(off + nbuckets * sizeof(uint32_t), 64);
    size_t off_entries = off;
    off = align_up(off + entries * sizeof(Entry), 64);
    size_t off_tags = off;
    off = align_up(off + nunits, 4096);
    size_t off_data = off;
    size_t region = off_data + nunits * kUnit;

    Store s;
    s.shm_ = ShmRegion::create_anonymous(region, err);
    if (!s.shm_)
        return Store();
    Impl* im = new (s.shm_.data()) Impl();
    im->magic = kStoreMagic;
    im->region_size = s.shm_.size();
    im->memory = nunits * kUnit;
    // A body needs at most kMaxExtents blocks of the largest order, and an
    // object bigger than half the store would evict everything else.
    im->max_object = std::min(
        {max_object, block_bytes(kMaxOrder) * (kMaxExtents - 1),
         im->memory / 2});
    im->nentries = static_cast<uint32_t>(entries);
    im->nbuckets = static_cast<uint32_t>(nbuckets);
    im->nunits = static_cast<uint32_t>(nunits);
    im->off_procs = off_procs;
    im->off_buckets = off_buckets;
    im->off_entries = off_entries;
    im->off_tags = off_tags;
    im->off_data = off_data;
    bool ok = im->evict_lock.init(err) && im->alloc_lock.init(err);
    for (uint32_t i = 0; ok && i < kStripes; ++i)
        ok = im->stripes[i].init(err);
    if (!ok)
        return Store();
    for (uint32_t i = im->nentries; i-- > 0;) {
        Entry& e = im->entry(i);
        e.owner = -1;
        e.next = im->entry_free;
        im->entry_free = i + 1;
    }
    im->free_range(0, im->nunits);
    if (!s.join()) {
        *err = "store: no process slot";
        return Store();
    }
    return s;
}

size_t
Store::max_object() const noexcept
{
    return impl()->max_object;
}

size_t
Store::overhead() const noexcept
{
    return impl()->region_size - impl()->memory;
}

// ---------------------------------------------------------------- processes

bool
Store::join() noexcept
{
    Impl* im = impl();
    int32_t pid = static_cast<int32_t>(::getpid());
    ProcSlot* p = im->procs();
    // A slot left by an earlier process with our pid (pid reuse) holds pins
    // and fills that are not ours.
    for (uint32_t k = 0; k < kMaxProcs; ++k)
        if (p[k].pid.load(std::memory_order_acquire) == pid)
            im->release_slot(k);
    slot_ = -1;
    for (int pass = 0; pass < 2 && slot_ < 0; ++pass) {
        if (pass == 1)
            reap_dead();
        im->lock_alloc();
        for (uint32_t k = 0; k < kMaxProcs; ++k) {
            if (p[k].pid.load(std::memory_order_acquire) == 0) {
                std::memset(p[k].pins, 0, sizeof(p[k].pins));
                p[k].pid.store(pid, std::memory_order_release);
                slot_ = static_cast<int>(k);
                break;
            }
        }
        im->alloc_lock.unlock();
    }
    if (slot_ < 0)
        return false;
    pins_storage_ = std::make_unique<uint32_t[]>(kPinsPerProc);
    free_pins_ = pins_storage_.get();
    for (uint32_t i = 0; i < kPinsPerProc; ++i)
        free_pins_[i] = kPinsPerProc - 1 - i;
    nfree_pins_ = kPinsPerProc;
    return true;
}

void
Store::Impl::release_slot(uint32_t k) noexcept
{
    ProcSlot& p = procs()[k];
    for (uint32_t j = 0; j < kPinsPerProc; ++j) {
        uint32_t pin = p.pins[j];
        if (pin == kNone || pin > nentries)
            continue;
        // A pinned entry is not freed, so its hash (and stripe) is stable.
        Entry& e = entry(pin - 1);
        uint32_t s = stripe_index(e.hash);
        lock_stripe(s);
        if (p.pins[j] == pin) {
            p.pins[j] = kNone;
            if (e.refcount > 0 && --e.refcount == 0 &&
                e.state.load(std::memory_order_relaxed) == EntryState::kDead) {
                lock_alloc();
                free_entry(pin - 1);
                alloc_lock.unlock();
            }
        }
        stripes[s].unlock();
    }
    for (uint32_t i = 0; i < nentries; ++i) {
        Entry& e = entry(i);
        EntryState st = e.state.load(std::memory_order_acquire);
        if (st == EntryState::kFilling && e.owner == static_cast<int32_t>(k)) {
            uint32_t s = stripe_index(e.hash);
            lock_stripe(s);
            if (e.state.load(std::memory_order_relaxed) ==
                    EntryState::kFilling &&
                e.owner == static_cast<int32_t>(k)) {
                drop_fill(i);
                aborts.fetch_add(1, std::memory_order_relaxed);
            }
            stripes[s].unlock();
        } else if (st == EntryState::kClaimed &&
                   e.owner == static_cast<int32_t>(k)) {
            lock_alloc();
            if (e.state.load(std::memory_order_relaxed) ==
                    EntryState::kClaimed &&
                e.owner == static_cast<int32_t>(k)) {
                free_entry(i);
                aborts.fetch_add(1, std::memory_order_relaxed);
            }
            alloc_lock.unlock();
        }
    }
    lock_alloc();
    p.pid.store(0, std::memory_order_release);
    alloc_lock.unlock();
}

void
Store::release_process(pid_t pid) noexcept
{
    Impl* im = impl();
    for (uint32_t k = 0; k < kMaxProcs; ++k)
        if (im->procs()[k].pid.load(std::memory_order_acquire) == pid &&
            static_cast<int>(k) != slot_)
            im->release_slot(k);
}

void
Store::reap_dead() noexcept
{
    Impl* im = impl();
    for (uint32_t k = 0; k < kMaxProcs; ++k) {
        int32_t pid = im->procs()[k].pid.load(std::memory_order_acquire);
        // EPERM means alive under another uid: only ESRCH is death.
        if (pid != 0 && static_cast<int>(k) != slot_ && ::kill(pid, 0) < 0 &&
            errno == ESRCH)
            im->release_slot(k);
    }
}

// ---------------------------------------------------------------- lookups

ObjectRef
Store::lookup(std::string_view key, LookupStatus* status) noexcept
{
    CHECK(slot_ >= 0);
    ObjectRef ref;
    LookupStatus st = LookupStatus::kMiss;
    Impl* im = impl();
    uint64_t hash = store_hash(key);
    uint32_t s = im->stripe_index(hash);
    im->lock_stripe(s);
    uint32_t found = kNone;
    for (uint32_t i = im->buckets()[im->bucket_of(hash)]; i != kNone;
         i = im->entry(i - 1).next) {
        Entry& e = im->entry(i - 1);
        if (!key_matches(im, e, hash, key))
            continue;
        EntryState es = e.state.load(std::memory_order_relaxed);
        if (es == EntryState::kLive) {
            found = i;
            break;
        }
        if (es == EntryState::kFilling)
            st = LookupStatus::kFilling;
    }
    if (found != kNone && nfree_pins_ == 0) {
        st = LookupStatus::kPinsExhausted;
    } else if (found != kNone) {
        Entry& e = im->entry(found - 1);
        if (e.visited.load(std::memory_order_relaxed) == 0)
            e.visited.store(1, std::memory_order_relaxed);
        pin(found - 1, im->head(e)->body_size, &ref);
        st = LookupStatus::kHit;
    }
    im->stripes[s].unlock();
    if (status != nullptr)
        *status = st;
    return ref;
}

void
Store::pin(uint32_t idx, uint64_t body_size, ObjectRef* ref) noexcept
{
    Impl* im = impl();
    Entry& e = im->entry(idx);
    uint32_t p = free_pins_[--nfree_pins_];
    im->procs()[slot_].pins[p] = idx + 1;
    ++e.refcount;
    Head* h = im->head(e);
    ref->store_ = this;
    ref->entry_ = idx;
    ref->pin_ = p;
    ref->head_ = h;
    ref->body_size_ = body_size;
    read_record(h, &ref->meta_);
}

ObjectRef
Store::follow(std::string_view key) noexcept
{
    CHECK(slot_ >= 0);
    ObjectRef ref;
    Impl* im = impl();
    uint64_t hash = store_hash(key);
    uint32_t s = im->stripe_index(hash);
    im->lock_stripe(s);
    for (uint32_t i = im->buckets()[im->bucket_of(hash)]; i != kNone;
         i = im->entry(i - 1).next) {
        Entry& e = im->entry(i - 1);
        if (e.state.load(std::memory_order_relaxed) != EntryState::kFilling ||
            !key_matches(im, e, hash, key))
            continue;
        uint64_t expected = im->head(e)->expected;
        if (expected != 0 && nfree_pins_ != 0)
            pin(i - 1, expected, &ref);
        break;
    }
    im->stripes[s].unlock();
    return ref;
}

ObjectRef::ObjectRef(ObjectRef&& o) noexcept
    : store_(std::exchange(o.store_, nullptr)), entry_(o.entry_), pin_(o.pin_),
      head_(o.head_), body_size_(o.body_size_), meta_(o.meta_)
{}

ObjectRef&
ObjectRef::operator=(ObjectRef&& o) noexcept
{
    if (this != &o) {
        reset();
        store_ = std::exchange(o.store_, nullptr);
        entry_ = o.entry_;
        pin_ = o.pin_;
        head_ = o.head_;
        body_size_ = o.body_size_;
        meta_ = o.meta_;
    }
    return *this;
}

void
ObjectRef::reset() noexcept
{
    if (store_ == nullptr)
        return;
    Store::Impl* im = store_->impl();
    Entry& e = im->entry(entry_);
    uint32_t s = im->stripe_index(e.hash);
    im->lock_stripe(s);
    im->procs()[store_->slot_].pins[pin_] = kNone;
    if (e.refcount > 0 && --e.refcount == 0 &&
        e.state.load(std::memory_order_relaxed) == EntryState::kDead) {
        im->lock_alloc();
        im->free_entry(entry_);
        im->alloc_lock.unlock();
    }
    im->stripes[s].unlock();
    store_->free_pins_[store_->nfree_pins_++] = pin_;
    store_ = nullptr;
}

std::string_view
ObjectRef::key() const noexcept
{
    return head_key(static_cast<const Head*>(head_));
}

size_t
ObjectRef::extent_count() const noexcept
{
    Store::Impl* im = store_->impl();
    const Entry& e = im->entry(entry_);
    Head* h = im->head(e);
    uint64_t covered = 0;
    size_t n = 0;
    while (covered < body_size_ && n < h->nextents) {
        size_t cap;
        extent_ptr(im, e, h, static_cast<uint32_t>(n), &cap);
        covered += cap;
        ++n;
    }
    return n;
}

std::string_view
ObjectRef::extent(size_t i) const noexcept
{
    Store::Impl* im = store_->impl();
    const Entry& e = im->entry(entry_);
    Head* h = im->head(e);
    uint64_t before = 0;
    for (uint32_t k = 0; k < h->nextents; ++k) {
        size_t cap;
        char* p = extent_ptr(im, e, h, k, &cap);
        if (k == i) {
            uint64_t left = body_size_ > before ? body_size_ - before : 0;
            return std::string_view(p, std::min<uint64_t>(cap, left));
        }
        before += cap;
    }
    return std::string_view();
}

size_t
ObjectRef::body_iov(uint64_t offset, uint64_t len, struct iovec* iov,
                    size_t max) const noexcept
{
    if (offset >= body_size_)
        return 0;
    len = std::min(len, body_size_ - offset);
    Store::Impl* im = store_->impl();
    const Entry& e = im->entry(entry_);
    Head* h = im->head(e);
    uint64_t pos = 0;
    size_t n = 0;
    for (uint32_t k = 0; k < h->nextents && len > 0 && n < max; ++k) {
        size_t cap;
        char* p = extent_ptr(im, e, h, k, &cap);
        if (offset < pos + cap) {
            uint64_t skip = offset - pos;
            uint64_t take = std::min<uint64_t>(cap - skip, len);
            iov[n].iov_base = p + skip;
            iov[n].iov_len = take;
            ++n;
            offset += take;
            len -= take;
        }
        pos += cap;
    }
    return n;
}

size_t
ObjectRef::copy_body(uint64_t offset, char* out, size_t len) const noexcept
{
    struct iovec iov[Store::kMaxExtents];
    size_t n = body_iov(offset, len, iov, Store::kMaxExtents);
    size_t done = 0;
    for (size_t i = 0; i < n; ++i) {
        std::memcpy(out + done, iov[i].iov_base, iov[i].iov_len);
        done += iov[i].iov_len;
    }
    return done;
}

uint64_t
ObjectRef::available() const noexcept
{
    const Head* h = static_cast<const Head*>(head_);
    if (fill_state() == FillState::kComplete)
        return body_size_;
    return std::min(h->filled.load(std::memory_order_acquire), body_size_);
}

FillState
ObjectRef::fill_state() const noexcept
{
    const Head* h = static_cast<const Head*>(head_);
    auto st = static_cast<FillState>(
        h->fill_end.load(std::memory_order_acquire));
    // A fill that ended short of what it announced is no use to a reader
    // that announced that length in turn.
    if (st == FillState::kComplete && h->body_size != body_size_)
        return FillState::kDiscarded;
    return st;
}

// ---------------------------------------------------------------- eviction

bool
Store::Impl::evict_one() noexcept
{
    lock_evict();
    uint64_t limit = 2 * nobjects.load(std::memory_order_relaxed) + 2;
    uint32_t h = hand != kNone ? hand : q_tail;
    for (uint64_t step = 0; step < limit && h != kNone; ++step) {
        uint32_t idx = h - 1;
        Entry& e = entry(idx);
        uint32_t s = stripe_index(e.hash);
        lock_stripe(s);
        uint32_t next = e.newer != kNone ? e.newer : q_tail;
        if (e.refcount == 0 && e.visited.load(std::memory_order_relaxed) == 0) {
            hand = h;  // retire moves it on to the next newer object
            retire(idx);
            evictions.fetch_add(1, std::memory_order_relaxed);
            stripes[s].unlock();
            evict_lock.unlock();
            return true;
        }
        e.visited.store(0, std::memory_order_relaxed);
        stripes[s].unlock();
        h = next;
    }
    hand = h;
    evict_lock.unlock();
    return false;
}

// ---------------------------------------------------------------- fills

StoreWriter
Store::begin_insert(std::string_view key, const ObjectMeta& meta,
                    uint64_t expected_size) noexcept
{
    CHECK(slot_ >= 0);
    Impl* im = impl();
    StoreWriter w;
    size_t need = record_size(key, meta);
    if (key.empty() || key.size() > kMaxKey || need > kMaxHead ||
        expected_size > im->max_object) {
        im->refused.fetch_add(1, std::memory_order_relaxed);
        return w;
    }
    uint32_t order = order_for(need);
    if (expected_size > 0 && need + expected_size <= kInlineLimit)
        order = order_for(need + expected_size);
    uint64_t hash = store_hash(key);
    uint32_t idx = 0;
    bool claimed = false;
    for (int tries = 0; !claimed; ++tries) {
        im->lock_alloc();
        uint32_t got = 0;
        uint32_t unit = kNone;
        if (im->entry_free != kNone)
            unit = im->alloc_block(order, order, &got);
        if (unit != kNone) {
            idx = im->entry_free - 1;
            claimed = true;
            Entry& e = im->entry(idx);
            im->entry_free = e.next;
            e.next = kNone;
            e.hash = hash;
            e.head = unit - 1;
            e.head_order = static_cast<uint8_t>(got);
            e.refcount = 0;
            e.flags = 0;
            e.owner = slot_;
            e.visited.store(0, std::memory_order_relaxed);
            Head* h = im->head(e);
            h->magic = kHeadMagic;
            h->used = static_cast<uint32_t>(need);
            h->body_size = 0;
            h->expected = expected_size;
            h->filled.store(0, std::memory_order_relaxed);
            h->fill_end.store(static_cast<uint32_t>(FillState::kFilling),
                              std::memory_order_relaxed);
            h->nextents = 0;
            if (block_bytes(got) > need) {
                h->extents[0] = Extent{unit - 1, 0, 1, 0};
                h->nextents = 1;
            }
            e.state.store(EntryState::kClaimed, std::memory_order_release);
            im->nfilling.fetch_add(1, std::memory_order_relaxed);
        }
        im->alloc_lock.unlock();
        if (!claimed && (tries >= kMaxEvictions || !im->evict_one())) {
            im->refused.fetch_add(1, std::memory_order_relaxed);
            return w;
        }
    }
    Entry& e = im->entry(idx);
    Head* h = im->head(e);
    write_record(h, key, meta);
    uint32_t s = im->stripe_index(hash);
    im->lock_stripe(s);
    uint32_t* bucket = &im->buckets()[im->bucket_of(hash)];
    e.next = *bucket;
    *bucket = idx + 1;
    e.state.store(EntryState::kFilling, std::memory_order_release);
    im->stripes[s].unlock();

    w.store_ = this;
    w.entry_ = idx;
    w.gen_ = e.gen;
    w.expected_ = expected_size;
    if (h->nextents == 1) {
        w.cur_ = extent_ptr(im, e, h, 0, &w.cur_left_);
    }
    return w;
}

StoreWriter::StoreWriter(StoreWriter&& o) noexcept
    : store_(std::exchange(o.store_, nullptr)), entry_(o.entry_), gen_(o.gen_),
      size_(o.size_), expected_(o.expected_), cur_(o.cur_),
      cur_left_(o.cur_left_)
{}

StoreWriter&
StoreWriter::operator=(StoreWriter&& o) noexcept
{
    if (this != &o) {
        abort();
        store_ = std::exchange(o.store_, nullptr);
        entry_ = o.entry_;
        gen_ = o.gen_;
        size_ = o.size_;
        expected_ = o.expected_;
        cur_ = o.cur_;
        cur_left_ = o.cur_left_;
    }
    return *this;
}

bool
StoreWriter::append(const void* data, size_t len) noexcept
{
    if (store_ == nullptr)
        return false;
    Store::Impl* im = store_->impl();
    if (size_ + len > im->max_object) {
        im->refused.fetch_add(1, std::memory_order_relaxed);
        abort();
        return false;
    }
    const char* p = static_cast<const char*>(data);
    while (len > 0) {
        if (cur_left_ == 0) {
            // A new extent: what is still expected, or for a body of unknown
            // length as much again as we have, so the extents double.
            uint64_t want = expected_ > size_
                                ? expected_ - size_
                                : std::max<uint64_t>(size_, kFirstExtent);
            want = std::max<uint64_t>(
                std::min<uint64_t>(want, im->max_object - size_), len);
            uint32_t order = std::min(order_for(want), Store::kMaxOrder);
            Entry& e = im->entry(entry_);
            Head* h = im->head(e);
            uint32_t left = Store::kMaxExtents - h->nextents;
            if (left == 0) {
                abort();
                return false;
            }
            // With extents to spare, a smaller block will do when memory is
            // fragmented; the last ones must be big enough.
            uint32_t min_order = left > 4 ? (order > 3 ? order - 3 : 0) : order;
            bool got_it = false;
            for (int tries = 0; !got_it; ++tries) {
                im->lock_alloc();
                uint32_t got = 0;
                uint32_t unit = kNone;
                bool mine = e.gen == gen_ && e.owner == store_->slot_ &&
                            e.state.load(std::memory_order_relaxed) ==
                                EntryState::kFilling;
                if (mine)
                    unit = im->alloc_block(order, min_order, &got);
                if (unit != kNone) {
                    h->extents[h->nextents] =
                        Extent{unit - 1, static_cast<uint8_t>(got), 0, 0};
                    ++h->nextents;
                    cur_ = im->unit_ptr(unit - 1);
                    cur_left_ = block_bytes(got);
                    got_it = true;
                }
                im->alloc_lock.unlock();
                if (!mine ||
                    (!got_it && (tries >= kMaxEvictions || !im->evict_one()))) {
                    im->refused.fetch_add(1, std::memory_order_relaxed);
                    abort();
                    return false;
                }
            }
        }
        size_t n = std::min(len, cur_left_);
        std::memcpy(cur_, p, n);
        cur_ += n;
        cur_left_ -= n;
        p += n;
        len -= n;
        size_ += n;
    }
    // After the bytes and the extents that hold them: followers read up
    // to what this says.
    im->head(im->entry(entry_))->filled.store(size_, std::memory_order_release);
    return true;
}

bool
StoreWriter::commit() noexcept
{
    if (store_ == nullptr)
        return false;
    Store::Impl* im = store_->impl();
    Entry& e = im->entry(entry_);
    uint32_t s = im->stripe_index(e.hash);
    im->lock_evict();
    im->lock_stripe(s);
    bool mine = e.gen == gen_ && e.owner == store_->slot_ &&
                e.state.load(std::memory_order_relaxed) == EntryState::kFilling;
    bool ok = mine && (e.flags & kEntryDoomed) == 0;
    if (ok) {
        Head* h = im->head(e);
        h->body_size = size_;
        h->fill_end.store(static_cast<uint32_t>(FillState::kComplete),
                          std::memory_order_release);
        std::string_view key = head_key(h);
        // Replace the live object with the same key, if any. Unlinking it
        // before publishing ours keeps one live object per key even if we
        // die in between.
        uint32_t i = im->buckets()[im->bucket_of(e.hash)];
        while (i != kNone) {
            Entry& o = im->entry(i - 1);
            uint32_t next = o.next;
            if (i - 1 != entry_ &&
                o.state.load(std::memory_order_relaxed) == EntryState::kLive &&
                key_matches(im, o, e.hash, key)) {
                im->retire(i - 1);
                im->removals.fetch_add(1, std::memory_order_relaxed);
            }
            i = next;
        }
        e.visited.store(0, std::memory_order_relaxed);
        e.owner = -1;
        e.state.store(EntryState::kLive, std::memory_order_release);
        im->nfilling.fetch_sub(1, std::memory_order_relaxed);
        im->nobjects.fetch_add(1, std::memory_order_relaxed);
        im->queue_push(entry_);
        im->inserts.fetch_add(1, std::memory_order_relaxed);
    } else if (mine) {
        im->drop_fill(entry_);
        im->aborts.fetch_add(1, std::memory_order_relaxed);
    }
    im->stripes[s].unlock();
    im->evict_lock.unlock();
    store_ = nullptr;
    return ok;
}

void
StoreWriter::abort() noexcept
{
    if (store_ == nullptr)
        return;
    Store::Impl* im = store_->impl();
    Entry& e = im->entry(entry_);
    uint32_t s = im->stripe_index(e.hash);
    im->lock_stripe(s);
    if (e.gen == gen_ && e.owner == store_->slot_ &&
        e.state.load(std::memory_order_relaxed) == EntryState::kFilling)
        im->drop_fill(entry_);
    im->stripes[s].unlock();
    im->aborts.fetch_add(1, std::memory_order_relaxed);
    store_ = nullptr;
}

// ---------------------------------------------------------------- removal

bool
Store::remove(std::string_view key) noexcept
{
    Impl* im = impl();
    uint64_t hash = store_hash(key);
    uint32_t s = im->stripe_index(hash);
    size_t n = 0;
    im->lock_evict();
    im->lock_stripe(s);
    uint32_t i = im->buckets()[im->bucket_of(hash)];
    while (i != kNone) {
        Entry& e = im->entry(i - 1);
        uint32_t next = e.next;
        if (key_matches(im, e, hash, key)) {
            EntryState st = e.state.load(std::memory_order_relaxed);
            if (st == EntryState::kLive) {
                im->retire(i - 1);
                ++n;
            } else if (st == EntryState::kFilling) {
                e.flags |= kEntryDoomed;
                ++n;
            }
        }
        i = next;
    }
    im->stripes[s].unlock();
    im->evict_lock.unlock();
    im->removals.fetch_add(n, std::memory_order_relaxed);
    return n > 0;
}

size_t
Store::remove_if(const std::function<bool(const ObjectInfo&)>& pred) noexcept
{
    Impl* im = impl();
    size_t n = 0;
    for (uint32_t s = 0; s < kStripes; ++s) {
        im->lock_evict();
        im->lock_stripe(s);
        for (uint32_t b = s; b < im->nbuckets; b += kStripes) {
            uint32_t i = im->buckets()[b];
            while (i != kNone) {
                Entry& e = im->entry(i - 1);
                uint32_t next = e.next;
                Head* h = im->head(e);
                EntryState st = e.state.load(std::memory_order_relaxed);
                ObjectMeta meta;
                read_record(h, &meta);
                ObjectInfo info;
                info.key = head_key(h);
                info.meta = &meta;
                info.body_size = h->body_size;
                info.filling = st == EntryState::kFilling;
                if (pred(info)) {
                    if (st == EntryState::kLive) {
                        im->retire(i - 1);
                        ++n;
                    } else if ((e.flags & kEntryDoomed) == 0) {
                        e.flags |= kEntryDoomed;
                        ++n;
                    }
                }
                i = next;
            }
        }
        im->stripes[s].unlock();
        im->evict_lock.unlock();
    }
    im->removals.fetch_add(n, std::memory_order_relaxed);
    return n;
}

size_t
Store::remove_prefix(std::string_view prefix) noexcept
{
    return remove_if([prefix](const ObjectInfo& o) {
        return o.key.substr(0, prefix.size()) == prefix;
    });
}

namespace {

// Whether `cur` is the stored response `expect` describes (update_meta).
bool
same_response(const ObjectMeta& cur, const ObjectMeta* expect) noexcept
{
    return expect == nullptr || (cur.response_time == expect->response_time &&
                                 cur.etag == expect->etag &&
                                 cur.last_modified == expect->last_modified);
}

}  // namespace

bool
Store::update_meta(std::string_view key, const ObjectMeta& meta,
                   const ObjectMeta* expect) noexcept
{
    Impl* im = impl();
    uint64_t hash = store_hash(key);
    uint32_t s = im->stripe_index(hash);
    size_t need = record_size(key, meta);
    bool found = false, done = false;
    im->lock_stripe(s);
    for (uint32_t i = im->buckets()[im->bucket_of(hash)]; i != kNone;
         i = im->entry(i - 1).next) {
        Entry& e = im->entry(i - 1);
        if (e.state.load(std::memory_order_relaxed) != EntryState::kLive ||
            !key_matches(im, e, hash, key))
            continue;
        Head* h = im->head(e);
        if (expect != nullptr) {
            ObjectMeta cur;
            read_record(h, &cur);
            if (!same_response(cur, expect))
                break;  // replaced since it was revalidated
        }
        found = true;
        // In place only while nobody reads it (a reader pins under this
        // lock, so none can start) and the record does not grow into the
        // body's inline extent.
        if (e.refcount == 0 && need <= h->used) {
            write_record(h, key, meta);
            done = true;
        }
        break;
    }
    im->stripes[s].unlock();
    if (done || !found)
        return done;
    // A copy with the new record replaces it; readers keep the old one.
    ObjectRef old = lookup(key);
    if (!old || !same_response(old.meta(), expect))
        return false;
    StoreWriter w = begin_insert(key, meta, old.body_size());
    if (!w)
        return false;
    for (size_t i = 0; i < old.extent_count(); ++i) {
        std::string_view x = old.extent(i);
        if (!w.append(x.data(), x.size()))
            return false;
    }
    return w.commit();
}

void
Store::for_each(const std::function<void(const ObjectInfo&)>& fn) const noexcept
{
    Impl* im = impl();
    for (uint32_t s = 0; s < kStripes; ++s) {
        im->lock_stripe(s);
        for (uint32_t b = s; b < im->nbuckets; b += kStripes) {
            for (uint32_t i = im->buckets()[b]; i != kNone;
                 i = im->entry(i - 1).next) {
                Entry& e = im->entry(i - 1);
                Head* h = im->head(e);
                ObjectMeta meta;
                read_record(h, &meta);
                ObjectInfo info;
                info.key = head_key(h);
                info.meta = &meta;
                info.body_size = h->body_size;
                info.filling = e.state.load(std::memory_order_relaxed) ==
                               EntryState::kFilling;
                fn(info);
            }
        }
        im->stripes[s].unlock();
    }
}

StoreStats
Store::stats() const noexcept
{
    Impl* im = impl();
    StoreStats st;
    st.objects = im->nobjects.load(std::memory_order_relaxed);
    st.filling = im->nfilling.load(std::memory_order_relaxed);
    st.dead = im->ndead.load(std::memory_order_relaxed);
    im->lock_alloc();
    st.bytes_used = im->bytes_used;
    im->alloc_lock.unlock();
    st.capacity = im->memory;
    st.overhead = im->region_size - im->memory;
    st.entries = im->nentries;
    st.inserts = im->inserts.load(std::memory_order_relaxed);
    st.aborts = im->aborts.load(std::memory_order_relaxed);
    st.evictions = im->evictions.load(std::memory_order_relaxed);
    st.removals = im->removals.load(std::memory_order_relaxed);
    st.refused = im->refused.load(std::memory_order_relaxed);
    st.recoveries = im->recoveries.load(std::memory_order_relaxed);
    return st;
}

void
Store::debug_hold_lock(int which, std::string_view key) noexcept
{
    Impl* im = impl();
    if (which == 0)
        im->lock_evict();
    else if (which == 1)
        im->lock_stripe(im->stripe_index(store_hash(key)));
    else
        im->lock_alloc();
}

}  // namespace sj
