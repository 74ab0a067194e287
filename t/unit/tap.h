#pragma once
// A tiny TAP producer for the C++ unit tests: each test binary prints
// "1..N" at the end (done_testing), "ok N - name" or "not ok N - name", and
// exits non-zero if anything failed, so prove and automake's TAP driver both
// read it.

#include <cstdio>
#include <string>

namespace tap {

inline int g_count = 0;
inline int g_failed = 0;

inline bool
ok(bool cond, const std::string& name)
{
    ++g_count;
    if (!cond)
        ++g_failed;
    std::printf("%sok %d - %s\n", cond ? "" : "not ", g_count, name.c_str());
    std::fflush(stdout);
    return cond;
}

template <typename A, typename B>
inline bool
is(const A& got, const B& want, const std::string& name)
{
    bool r = ok(got == want, name);
    if (!r) {
        std::string g, w;
        if constexpr (requires { std::to_string(got); })
            g = std::to_string(got), w = std::to_string(want);
        else
            g = std::string(got), w = std::string(want);
        std::printf("#   got:      '%s'\n#   expected: '%s'\n", g.c_str(),
                    w.c_str());
    }
    return r;
}

// A test not run here, and why: prove counts it as skipped, not passed.
inline void
skip(const std::string& name, const std::string& why)
{
    ++g_count;
    std::printf("ok %d - %s # SKIP %s\n", g_count, name.c_str(), why.c_str());
    std::fflush(stdout);
}

inline void
diag(const std::string& msg)
{
    std::printf("# %s\n", msg.c_str());
}

inline int
done_testing()
{
    std::printf("1..%d\n", g_count);
    return g_failed == 0 ? 0 : 1;
}

}  // namespace tap
