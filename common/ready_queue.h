#pragma once
// Read events of one poll, run in the order the kernel reported them.
//
// libev keeps the callbacks due after a poll on a stack and runs them last
// first: of the connections that became readable together, the one whose
// bytes arrived first is served last. Under load a poll returns dozens of
// them, and that one waits behind all the others (measured in balancerd:
// the p90 and p99 of wrk's latency, against HAProxy's, which serves a poll
// in order). A ReadyQueue takes the read events instead: the watcher's
// callback push()es itself, and run(), called from a prepare watcher (after
// every callback of the poll, before the loop polls again), calls the real
// handlers first-ready first.
//
// Whatever a watcher belongs to must outlive the next run(): the daemons
// free connections from the same prepare watcher, after run(). A watcher
// stopped since its event was pushed is skipped; one stopped and started
// again gets its handler called once more, which must cope with a read
// that would block.

#include <ev.h>

#include <utility>
#include <vector>

namespace sj {

class ReadyQueue {
public:
    using Handler = void (*)(ev_io* w) noexcept;

    void push(ev_io* w, Handler h) { q_.emplace_back(w, h); }

    void run() noexcept
    {
        // The stack libev popped them from was filled in poll order.
        for (size_t i = q_.size(); i-- > 0;) {
            auto [w, h] = q_[i];
            if (ev_is_active(w))
                h(w);
        }
        q_.clear();
    }

private:
    std::vector<std::pair<ev_io*, Handler>> q_;
};

}  // namespace sj
