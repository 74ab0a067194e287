// The balancing algorithms of balancerd/balance.h: shares match weights,
// consistent hashing moves few keys, slow start ramps, weight 0 gets
// nothing.

#include <map>
#include <string>
#include <vector>

#include "balancerd/balance.h"
#include "t/unit/tap.h"

using sj::BalanceNode;

namespace {

std::vector<BalanceNode>
nodes(std::initializer_list<int> weights)
{
    std::vector<BalanceNode> v;
    for (int w : weights)
        v.push_back({w, 0, true});
    return v;
}

void
test_round_robin()
{
    auto n = nodes({5, 1, 1});
    sj::SmoothRoundRobin rr;
    std::vector<int> count(3);
    std::string seq;
    for (int i = 0; i < 7; ++i) {
        int k = rr.pick(n);
        ++count[static_cast<size_t>(k)];
        seq += static_cast<char>('a' + k);
    }
    tap::ok(count[0] == 5 && count[1] == 1 && count[2] == 1,
            "smooth wrr: 5/1/1 over one cycle");
    tap::is(seq, std::string("aabacaa"),
            "smooth wrr interleaves (nginx order)");
    auto m = nodes({3, 0, 2});
    std::vector<int> c2(3);
    for (int i = 0; i < 5000; ++i)
        ++c2[static_cast<size_t>(rr.pick(m))];
    tap::ok(c2[1] == 0, "weight 0 never picked by wrr");
    tap::ok(c2[0] == 3000 && c2[2] == 2000, "wrr 3:2 exact over 5000");
    m[0].usable = false;
    tap::is(rr.pick(m), 2, "unusable node skipped");
    m[2].usable = false;
    tap::is(rr.pick(m), -1, "no candidate: -1");
}

void
test_least_conn()
{
    auto n = nodes({10, 10, 10});
    n[0].active = 3;
    n[1].active = 1;
    n[2].active = 2;
    uint32_t rotor = 0;
    tap::is(sj::pick_least_conn(n, &rotor), 1, "leastconn: fewest active");
    n = nodes({30, 10});
    n[0].active = 2;  // 2/30 < 1/10
    n[1].active = 1;
    tap::is(sj::pick_least_conn(n, &rotor), 0, "leastconn is weighted");
    n = nodes({10, 10, 10});
    std::vector<int> c(3);
    for (int i = 0; i < 300; ++i)
        ++c[static_cast<size_t>(sj::pick_least_conn(n, &rotor))];
    tap::ok(c[0] == 100 && c[1] == 100 && c[2] == 100, "leastconn ties rotate");
    n[1].weight = 0;
    for (int i = 0; i < 50; ++i)
        if (sj::pick_least_conn(n, &rotor) == 1)
            return (void)tap::ok(false, "leastconn: weight 0 skipped");
    tap::ok(true, "leastconn: weight 0 skipped");
}

void
test_two_choices()
{
    uint64_t rng = 12345;
    auto n = nodes({10, 10, 10, 10});
    n[0].active = 50;
    std::vector<int> c(4);
    for (int i = 0; i < 4000; ++i)
        ++c[static_cast<size_t>(sj::pick_two_choices(n, &rng))];
    tap::ok(c[0] == 0, "p2c: a loaded node loses every comparison");
    tap::ok(c[1] > 1100 && c[2] > 1100 && c[3] > 1100, "p2c: others share");
    n = nodes({30, 10, 0});
    std::vector<int> d(3);
    for (int i = 0; i < 40000; ++i)
        ++d[static_cast<size_t>(sj::pick_two_choices(n, &rng))];
    tap::ok(d[2] == 0, "p2c: weight 0 never picked");
    // With no load both draws are weighted and ties go to the first draw,
    // so the heavier node gets at least its weight share.
    tap::ok(d[0] > 28000, "p2c: weight 30 gets >= 3/4 at equal load");
    n = nodes({10});
    tap::is(sj::pick_two_choices(n, &rng), 0, "p2c: single node");
}

void
test_hash_ring()
{
    std::vector<std::string> names = {"php1", "php2", "php3"};
    sj::HashRing ring;
    ring.build(names, {10, 10, 10});
    auto n = nodes({10, 10, 10});
    std::map<std::string, int> before;
    std::vector<int> c(3);
    for (int i = 0; i < 30000; ++i) {
        std::string key = "/page/" + std::to_string(i);
        int k = ring.pick(key, n);
        before[key] = k;
        ++c[static_cast<size_t>(k)];
    }
    tap::ok(c[0] > 7000 && c[1] > 7000 && c[2] > 7000,
            "ring spreads keys over equal nodes");
    tap::is(ring.pick("/page/17", n), before["/page/17"],
            "same key, same node");
    // Adding a node moves only about a quarter of the keys, all to it.
    std::vector<std::string> names4 = {"php1", "php2", "php3", "php4"};
    sj::HashRing ring4;
    ring4.build(names4, {10, 10, 10, 10});
    auto n4 = nodes({10, 10, 10, 10});
    int moved = 0, moved_elsewhere = 0;
    for (const auto& [key, k] : before) {
        int k4 = ring4.pick(key, n4);
        if (k4 != k) {
            ++moved;
            if (k4 != 3)
                ++moved_elsewhere;
        }
    }
    tap::ok(moved > 4500 && moved < 10500,
            "adding a node moves ~1/4 keys (" + std::to_string(moved) + ")");
    tap::is(moved_elsewhere, 0, "moved keys all go to the new node");
    // A down node's keys go elsewhere; the others stay.
    n[1].usable = false;
    int stayed = 0, total_other = 0, on_down = 0;
    for (const auto& [key, k] : before) {
        int k2 = ring.pick(key, n);
        if (k2 == 1)
            ++on_down;
        if (k != 1) {
            ++total_other;
            stayed += k2 == k;
        }
    }
    tap::is(on_down, 0, "no key on the down node");
    tap::is(stayed, total_other, "keys of live nodes do not move");
    sj::HashRing w;
    w.build(names, {30, 10, 0});
    auto nw = nodes({30, 10, 0});
    std::vector<int> cw(3);
    for (int i = 0; i < 20000; ++i)
        ++cw[static_cast<size_t>(w.pick("k" + std::to_string(i), nw))];
    tap::ok(cw[2] == 0, "ring: weight 0 gets no keys");
    tap::ok(cw[0] > 2 * cw[1], "ring: weight 30 gets about 3x weight 10");
    tap::ok(w.matches({30, 10, 0}) && !w.matches({30, 10, 1}),
            "ring knows its weights");
}

void
test_slowstart()
{
    tap::is(sj::slowstart_weight(100, 0, 10), 1, "slowstart: starts at 1");
    tap::is(sj::slowstart_weight(100, 5, 10), 50, "slowstart: half way");
    tap::is(sj::slowstart_weight(100, 10, 10), 100, "slowstart: full at end");
    tap::is(sj::slowstart_weight(100, 3, 0), 100, "slowstart off");
    tap::is(sj::slowstart_weight(0, 3, 10), 0, "weight 0 stays 0");
    // Over a ramp the share of a returning node grows.
    sj::SmoothRoundRobin rr1, rr9;
    int early = 0, late = 0;
    for (int i = 0; i < 1000; ++i) {
        auto n = nodes({10, sj::slowstart_weight(10, 1, 10)});
        early += rr1.pick(n) == 1;
        n = nodes({10, sj::slowstart_weight(10, 9, 10)});
        late += rr9.pick(n) == 1;
    }
    tap::ok(early < late / 3, "ramped node gets more traffic later");
}

}  // namespace

int
main()
{
    test_round_robin();
    test_least_conn();
    test_two_choices();
    test_hash_ring();
    test_slowstart();
    return tap::done_testing();
}
