#!/usr/bin/perl
# The shared store: a hit served by another worker than the miss, the
# store surviving a worker killed with SIGKILL and respawned, and memory
# staying bounded under a fill several times larger than the store, with
# evictions counted (show stats).
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached get stats);

my $t = SJ::Test->new;
my $o = SJ::Cached::Origin->start($t);
my ($tt, $d, $port) = start_cached(origin => $o->address, test => $t,
    workers => 2, memory => '1M', max_object => '64K');
my @kids = $d->wait_children(2);
is(scalar @kids, 2, 'two workers');

# Misses and hits until both workers have served a hit of something the
# other stored; the access log names the worker (pid=N).
sub log_lines {
    open my $f, '<', $t->dir . '/access.log' or return ();
    return <$f>;
}
my %miss_pid;
my $cross = 0;
for my $i (1 .. 40) {
    my $p = "/w$i?cc=max-age%3D60";
    get($port, $p);
    for (1 .. 4) { get($port, $p) }
}
sleep 0.5;  # the access log is flushed every 0.2 s
for (log_lines()) {
    my ($path, $cache, $pid) = m{"GET (/w\d+)\S* HTTP/1\.1" \d+ .* cache=(\S+) .* pid=(\d+)}
        or next;
    if ($cache eq 'MISS') { $miss_pid{$path} = $pid; next }
    $cross++ if $cache eq 'HIT' && $miss_pid{$path} && $miss_pid{$path} != $pid;
}
ok($cross > 0, "hits served by another worker than the miss ($cross)");
is(scalar($o->requests(qr/^GET \/w/)), 40, 'one origin request per object');

# A worker killed with SIGKILL: the parent respawns it, the store stays.
get($port, '/keep?cc=max-age%3D600');
kill 'KILL', $kids[0];
my @now;
my $end = time + 10;
while (time < $end) {
    @now = $d->children;
    last if @now == 2 && !grep { $_ == $kids[0] } @now;
    sleep 0.05;
}
ok(@now == 2 && !grep({ $_ == $kids[0] } @now), 'killed worker respawned');
my $hits = 0;
for (1 .. 10) {
    my $r = get($port, '/keep?cc=max-age%3D600');
    $hits++ if ($r->{headers}{'cache-status'} // '') =~ /; hit/;
}
is($hits, 10, 'every request after the kill is a hit');
is(scalar($o->requests(qr/^GET \/keep/)), 1, 'the store survived the kill');
kill 'KILL', $now[0], $now[1];
$end = time + 10;
while (time < $end) {
    my @k = $d->children;
    last if @k == 2 && !grep { $_ == $now[0] || $_ == $now[1] } @k;
    sleep 0.05;
}
my $r = get($port, '/keep?cc=max-age%3D600');
like($r->{headers}{'cache-status'}, qr/; hit/, 'even both workers killed');

# Fill: 6 MiB of 16 KiB objects through a 1 MiB store.
my $st0 = stats($d);
for my $i (1 .. 400) {
    my $r2 = get($port, "/fill$i?cc=max-age%3D600&size=16000");
    die "fill failed: $r2->{status}" unless $r2->{status} == 200;
}
my $st = stats($d);
ok($st->{evictions} > $st0->{evictions} + 300,
   "evictions counted ($st->{evictions})");
ok($st->{memory_used} <= $st->{memory_capacity},
   "memory used $st->{memory_used} within capacity $st->{memory_capacity}");
is($st->{memory_capacity}, 1048576, 'capacity is the configured memory');
ok($st->{memory_overhead} > 0 && $st->{memory_overhead} < 4 << 20,
   "fixed overhead reported ($st->{memory_overhead})");
# The hot set survives a scan: an object hit between fills stays.
get($port, '/hot?cc=max-age%3D600&size=16000');
for my $i (401 .. 600) {
    get($port, "/fill$i?cc=max-age%3D600&size=16000");
    get($port, '/hot?cc=max-age%3D600&size=16000') if $i % 20 == 0;
}
is(scalar($o->requests(qr/^GET \/hot/)), 1, 'SIEVE: the hot object survived the scan');
# RSS of the workers stays bounded too (the store is shared memory).
my $rss = 0;
for my $pid ($d->children) {
    open my $f, '<', "/proc/$pid/status" or next;
    while (<$f>) { $rss = $1 if /^VmRSS:\s+(\d+)/ && $1 > $rss }
}
ok($rss < 64 * 1024, "worker RSS ${rss} kB stays small");
is($d->stop, 0, 'clean stop');
done_testing;
