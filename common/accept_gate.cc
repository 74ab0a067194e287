#include "common/accept_gate.h"

#include <unistd.h>

namespace sj {

uint32_t
busy_now(const AcceptSlot& s, int64_t now) noexcept
{
    uint32_t busy = s.busy.load(std::memory_order_relaxed);
    int64_t since = s.wait_since.load(std::memory_order_relaxed);
    if (since == 0 || now <= since)
        return busy;
    int64_t waited = now - since;
    if (waited >= AcceptGate::kAverageUs)
        return 0;
    return static_cast<uint32_t>(
        busy * (AcceptGate::kAverageUs - waited) / AcceptGate::kAverageUs);
}

AcceptGate::AcceptGate(struct ev_loop* loop, AcceptSlot* slots, size_t nslots,
                       size_t self, bool pack) noexcept
    : loop_(loop), slots_(slots), nslots_(nslots), self_(self), pack_(pack),
      pid_(static_cast<int32_t>(::getpid()))
{
    int64_t now = monotonic_us();
    AcceptSlot& s = mine();
    s.open.store(1, std::memory_order_relaxed);
    s.busy.store(0, std::memory_order_relaxed);
    s.wait_since.store(0, std::memory_order_relaxed);
    s.woke.store(now, std::memory_order_relaxed);
    s.pid.store(pid_, std::memory_order_release);
    last_woke_ = now;
    wait_start_ = now;
    // Measured as close around the wait as libev allows: the prepare
    // watcher last before it, the check watcher first after it.
    ev_prepare_init(&prepare_, on_prepare);
    ev_set_priority(&prepare_, EV_MINPRI);
    prepare_.data = this;
    ev_prepare_start(loop_, &prepare_);
    ev_check_init(&check_, on_check);
    ev_set_priority(&check_, EV_MAXPRI);
    check_.data = this;
    ev_check_start(loop_, &check_);
}

AcceptGate::~AcceptGate()
{
    ev_prepare_stop(loop_, &prepare_);
    ev_check_stop(loop_, &check_);
    int32_t pid = pid_;
    mine().open.store(0, std::memory_order_relaxed);
    mine().pid.compare_exchange_strong(pid, 0);
}

bool
AcceptGate::owned() const noexcept
{
    return mine().pid.load(std::memory_order_relaxed) == pid_;
}

void
AcceptGate::on_prepare(struct ev_loop*, ev_prepare* w, int) noexcept
{
    auto* self = static_cast<AcceptGate*>(w->data);
    self->wait_start_ = monotonic_us();
    if (self->owned())
        self->mine().wait_since.store(self->wait_start_,
                                      std::memory_order_relaxed);
}

void
AcceptGate::on_check(struct ev_loop*, ev_check* w, int) noexcept
{
    auto* self = static_cast<AcceptGate*>(w->data);
    int64_t now = monotonic_us();
    // Since the loop last woke: `span`, of which it ran `span - waited`.
    // An exponential average with time constant kAverageUs; a span that
    // long replaces it.
    auto span = static_cast<double>(now - self->last_woke_);
    auto waited = static_cast<double>(now - self->wait_start_);
    double ran = span > waited ? span - waited : 0;
    if (span >= kAverageUs)
        self->busy_ = span > 0 ? ran / span : 0;
    else
        self->busy_ += (ran - self->busy_ * span) / kAverageUs;
    self->last_woke_ = now;
    if (!self->owned())  // a newer worker of this index took the slot
        return;
    AcceptSlot& s = self->mine();
    s.wait_since.store(0, std::memory_order_relaxed);
    s.woke.store(now, std::memory_order_relaxed);
    s.busy.store(static_cast<uint32_t>(self->busy_ * 1000 + 0.5),
                 std::memory_order_relaxed);
}

size_t
AcceptGate::target(int64_t now) const noexcept
{
    for (size_t j = 0; j < self_ && j < nslots_; ++j) {
        const AcceptSlot& s = slots_[j];
        if (s.pid.load(std::memory_order_relaxed) == 0 ||
            s.open.load(std::memory_order_relaxed) == 0)
            continue;
        int64_t wait_since = s.wait_since.load(std::memory_order_relaxed);
        // Waiting for a while: idle now, whatever its average says.
        // Otherwise it must be waiting or have woken lately (a process
        // that stopped running is not a candidate) and not be too busy.
        if (wait_since != 0 && now - wait_since >= kIdleUs)
            return j;
        bool live = wait_since != 0 ||
                    now - s.woke.load(std::memory_order_relaxed) < kAverageUs;
        if (live && s.busy.load(std::memory_order_relaxed) < kBusyLimit)
            return j;
    }
    return self_;
}

bool
AcceptGate::defer() noexcept
{
    if (!pack_)
        return false;
    size_t t = target(monotonic_us());
    if (t == self_) {
        deferred_to_ = static_cast<size_t>(-1);
        return false;
    }
    deferred_to_ = t;
    deferred_progress_ = slots_[t].accepted.load(std::memory_order_relaxed);
    return true;
}

bool
AcceptGate::stalled() noexcept
{
    if (deferred_to_ >= nslots_)
        return false;
    bool stuck = slots_[deferred_to_].accepted.load(
                     std::memory_order_relaxed) == deferred_progress_;
    deferred_to_ = static_cast<size_t>(-1);
    return stuck;
}

void
AcceptGate::accepted(size_t n) noexcept
{
    if (n > 0 && owned())
        mine().accepted.fetch_add(n, std::memory_order_relaxed);
}

void
AcceptGate::set_open(bool open) noexcept
{
    if (owned())
        mine().open.store(open ? 1 : 0, std::memory_order_relaxed);
}

}  // namespace sj
