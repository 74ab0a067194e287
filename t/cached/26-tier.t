#!/usr/bin/perl
# The shared memcached tier: two cached instances in front of one origin
# share what either fetched (a local miss in one is a tier hit, not an
# origin request); a dead memcached node costs at most one short timeout,
# then it is skipped; `node health` from heartbeatd is accepted.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Memcached;
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached get stats);

if (my $why = SJ::Memcached::skip_reason()) { plan skip_all => $why }

my $mc = SJ::Memcached->start;
my $t0 = SJ::Test->new;
my $o = SJ::Cached::Origin->start($t0);
my $pools = { pools => qq{mc: { nodes = (
    { name = "mc1"; address = "${\ $mc->address}"; } ); };} };
my @c;
for my $name (qw(a b)) {
    my ($t, $d, $port) = start_cached(origin => $o->address,
        test => SJ::Test->new, sections => $pools,
        extra => 'shared_tier = "mc"; tier_timeout = 0.2;
                   purge_allow = [ "127.0.0.1" ];');
    push @c, { t => $t, d => $d, port => $port };
}
my ($A, $B) = map { $_->{port} } @c;

my $r = get($A, '/t1?cc=max-age%3D60&size=5000');
is($r->{status}, 200, 'A: miss from the origin');
my $ok = 0;
for (1 .. 20) {  # the tier set is fire-and-forget
    my $v = $mc->stats;
    last if ($ok = ($v->{curr_items} // 0) >= 1);
    sleep 0.05;
}
ok($ok, 'A stored the object in memcached');
$r = get($B, '/t1?cc=max-age%3D60&size=5000');
is($r->{status}, 200, 'B: 200');
is(length $r->{body}, 5000, 'B: the whole body');
like($r->{headers}{'cache-status'}, qr/detail=shared-tier/,
     'B: served from the shared tier');
is(scalar($o->requests(qr/^GET \/t1/)), 1, 'one origin request for both');
$r = get($B, '/t1?cc=max-age%3D60&size=5000');
like($r->{headers}{'cache-status'}, qr/; hit; ttl=\d+$/, 'B: then a local hit');
is(stats($c[1]{d})->{tier_hits}, 1, 'B counts one tier hit');

# PURGE removes from the tier too.
get($A, '/t2?cc=max-age%3D60');
sleep 0.2;
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$A") or die;
print $s "PURGE /t2?cc=max-age%3D60 HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n";
is(http_read($s)->{status}, 200, "PURGE on A");
sleep 0.2;
get($B, '/t2?cc=max-age%3D60');
is(scalar($o->requests(qr/^GET \/t2/)), 2, 'purged from the tier as well');

# Objects with Vary go to the tier too, one value per variant (the Vary
# header's normalised values in the key) beside an index under the key.
{
    my $p = '/v1?cc=max-age%3D60&vary=X-Lang';
    my $lang = sub {
        my ($port, $l) = @_;
        get($port, $p, headers => { 'X-Lang' => $l });
    };
    my $vcount = sub { scalar $o->requests(qr/^GET \/v1\?/) };
    # B stores what it fetched above in the tier in the background: count
    # from when memcached's item count has settled.
    my $before = $mc->stats->{curr_items} // 0;
    for (1 .. 20) {
        sleep 0.1;
        my $now = $mc->stats->{curr_items} // 0;
        last if $now == $before;
        $before = $now;
    }
    is($lang->($A, 'en')->{body}, "variant=en\n", 'Vary: A fetches en');
    is($lang->($A, 'fr')->{body}, "variant=fr\n", 'Vary: A fetches fr');
    is($vcount->(), 2, 'Vary: two origin requests');
    my $items = 0;
    for (1 .. 40) {
        last if ($items = ($mc->stats->{curr_items} // 0) - $before) >= 3;
        sleep 0.05;
    }
    is($items, 3, 'Vary: an index and two variants in memcached');
    $r = $lang->($B, 'en');
    is($r->{body}, "variant=en\n", 'Vary: B gets en');
    like($r->{headers}{'cache-status'}, qr/detail=shared-tier/,
         'Vary: B en from the shared tier');
    $r = $lang->($B, 'fr');
    is($r->{body}, "variant=fr\n", 'Vary: B gets fr');
    like($r->{headers}{'cache-status'}, qr/detail=shared-tier/,
         'Vary: B fr from the shared tier');
    is($vcount->(), 2, 'Vary: still two origin requests');
    $r = $lang->($B, 'de');
    is($r->{body}, "variant=de\n", 'Vary: B fetches de itself');
    is($vcount->(), 3, 'Vary: a third origin request');
    sleep 0.2;
    $r = $lang->($A, 'de');
    is($r->{body}, "variant=de\n", 'Vary: A gets de (B stored it)');
    like($r->{headers}{'cache-status'}, qr/detail=shared-tier/,
         'Vary: A de from the shared tier, beside its own variants');
    is($vcount->(), 3, 'Vary: no origin request for it');
    # A PURGE drops the index; the variants stored before are unreachable.
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$A") or die;
    print $s "PURGE $p HTTP/1.1\r\nHost: test.example\r\n"
        . "Connection: close\r\n\r\n";
    is(http_read($s)->{status}, 200, 'Vary: PURGE on A');
    sleep 0.2;
    $lang->($A, 'en');
    is($vcount->(), 4, 'Vary: after the purge en goes to the origin');
    sleep 0.2;
    $r = $lang->($A, 'fr');
    is($r->{body}, "variant=fr\n", 'Vary: fr after the purge');
    is($vcount->(), 5, 'Vary: the purged fr variant is not served');
}

# The memcached node dies: at most one timeout, then skipped.
$mc->kill;
my $t1 = time;
$r = get($B, '/t3?cc=max-age%3D60');
my $first = time - $t1;
is($r->{status}, 200, 'dead tier node: still answered');
ok($first < 1.0, sprintf('first request after the death: %.2fs', $first));
my $worst = 0;
for my $i (4 .. 8) {
    $t1 = time;
    get($B, "/t$i?cc=max-age%3D60");
    $worst = time - $t1 if time - $t1 > $worst;
}
ok($worst < 0.15, sprintf('later requests skip the dead node (%.3fs)', $worst));
my ($st, $body) = $c[1]{d}->ctl('node health mc/mc1 down killed');
is($st, 200, 'node health for the tier pool accepted');
($st, $body) = $c[1]{d}->ctl('node health php/p1 down x');
is($st, 200, 'node health for another pool ignored');
$mc->start;
($st, $body) = $c[1]{d}->ctl('node health mc/mc1 up');
is($st, 200, 'node back up');

is($_->{d}->stop, 0, 'clean stop') for @c;
done_testing;
