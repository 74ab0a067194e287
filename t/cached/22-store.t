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
use SJ::Cached qw(start_cached get stats server_pid);
use IO::Socket::INET;

sub log_lines {
    my ($file) = @_;
    open my $f, '<', $file or return ();
    return <$f>;
}

my $t = SJ::Test->new;
my $o = SJ::Cached::Origin->start($t);
my ($tt, $d, $port) = start_cached(origin => $o->address, test => $t,
    workers => 2, memory => '1M', max_object => '64K');
my @kids = $d->wait_children(2);
is(scalar @kids, 2, 'two workers');

# A hit served by another worker than the miss: two keep-alive
# connections, each opened while the other worker is stopped (SIGSTOP) so
# that this one accepts it (the kernel, left to itself, often gives one
# worker every connection), a miss on one, then the same URL on the other.
# ss(8) confirms who holds each.
sub ka_get {
    my ($sock, $path) = @_;
    print $sock "GET $path HTTP/1.1\r\nHost: test.example\r\n\r\n";
    return http_read($sock, timeout => 5);
}
my %by_worker;
for my $i (0, 1) {
    my $other = $kids[1 - $i];
    kill 'STOP', $other;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die;
    my $r = ka_get($s, '/ping?cc=max-age%3D600');  # accepted and answered
    kill 'CONT', $other;
    $by_worker{ $kids[$i] } = $s if $r->{status};
}
is_deeply([sort map { server_pid($by_worker{$_}) } keys %by_worker],
          [sort @kids], 'a connection in each worker');
{
    my ($sa, $sb) = @by_worker{@kids};
    my $m = ka_get($sa, '/cross?cc=max-age%3D60');
    like($m->{headers}{'cache-status'}, qr/fwd=miss/, 'miss in one worker');
    my $h = ka_get($sb, '/cross?cc=max-age%3D60');
    like($h->{headers}{'cache-status'}, qr/; hit/, 'hit in the other worker');
}
is(scalar($o->requests(qr/^GET \/cross/)), 1, 'one origin request');
# The access log names the worker of each request.
for my $i (1 .. 10) { get($port, "/w$i?cc=max-age%3D60") for 1 .. 2 }
sleep 0.5;  # the access log is flushed every 0.2 s
my @w = grep { m{"GET /w\d+\S* HTTP/1\.1" 200 .* cache=(MISS|HIT) .* pid=\d+$} }
    log_lines($t->dir . '/access.log');
is(scalar @w, 20, 'access log lines name cache status and worker pid');

# Purge and ban reach objects every worker holds in its hot table (fresh
# objects a worker pins to serve them without the store's lock): both
# workers serve the object over their kept-alive connection, then it is
# purged and each must go back to the store.
{
    my @conns = @by_worker{@kids};
    for (1 .. 5) { ka_get($_, '/hotp?cc=max-age%3D600') for @conns }
    my ($cs, $cb) = $d->ctl('purge http://test.example/hotp?cc=max-age%3D600');
    is($cs, 200, 'purge of an object both workers serve from memory');
    my @after = map { ka_get($_, '/hotp?cc=max-age%3D600') } @conns, @conns;
    is(scalar(grep { ($_->{headers}{'cache-status'} // '') =~ /fwd=/ } @after),
       1, 'after the purge exactly one request goes to the origin');
    is(scalar($o->requests(qr/^GET \/hotp/)), 2, 'purge seen by both workers');
    ($cs, $cb) = $d->ctl('ban ~hotp');
    like($cb, qr/banned 1/, 'ban');
    @after = map { ka_get($_, '/hotp?cc=max-age%3D600') } @conns, @conns;
    is(scalar($o->requests(qr/^GET \/hotp/)), 3, 'ban seen by both workers');
    # A replacement by one worker (PURGE and refetch) is seen by the other.
    is(ka_get($conns[1], '/hotp?cc=max-age%3D600')->{headers}{'cache-status'}
           =~ /; hit/ ? 1 : 0, 1, 'the other worker hits the new copy');
}

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
get($port, '/hot?cc=max-age%3D600&size=16000') for 1 .. 2;
for my $i (401 .. 600) {
    get($port, "/fill$i?cc=max-age%3D600&size=16000");
    get($port, '/hot?cc=max-age%3D600&size=16000') if $i % 20 == 0;
}
is(scalar($o->requests(qr/^GET \/hot\?/)), 1, "SIEVE: the hot object survived the scan");
# RSS of the workers stays bounded too (the store is shared memory).
my $rss = 0;
for my $pid ($d->children) {
    open my $f, '<', "/proc/$pid/status" or next;
    while (<$f>) { $rss = $1 if /^VmRSS:\s+(\d+)/ && $1 > $rss }
}
SKIP: {
    # Under ASan the freed buffers of every request the worker handled sit
    # in its quarantine (up to 256 MB): with one worker taking all the
    # fills (cached.accept_policy "pack") that alone passes 64 MB.
    skip 'absolute RSS means nothing under a sanitizer (its quarantine '
         . 'and shadow memory)', 1 if $ENV{SJ_SANITIZED};
    ok($rss < 64 * 1024, "worker RSS ${rss} kB stays small");
}
is($d->stop, 0, 'clean stop');
done_testing;
