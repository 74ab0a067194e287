#pragma once
// The monotonic clock (CLOCK_MONOTONIC: not moved by date(1) or NTP
// steps), for deadlines, ages and durations that cross processes.
// Readings of different processes compare.

#include <time.h>

#include <cstdint>

namespace sj {

inline int64_t
monotonic_us() noexcept
{
    struct timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

inline int64_t
monotonic_ms() noexcept
{
    return monotonic_us() / 1000;
}

}  // namespace sj
