#!/usr/bin/perl
# The access log (Combined Log Format plus cache status, timings and the
# worker's pid), reopened on SIGUSR1 after a rotation; the Prometheus text
# endpoint on metrics_listen.
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
my $mport = $t->port('metrics');
my ($tt, $d, $port) = start_cached(origin => $o->address, test => $t,
    extra => qq{metrics_listen = "127.0.0.1:$mport";});
my $log = $t->dir . '/access.log';

sub slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> // '' }
sub wait_match {
    my ($file, $re) = @_;
    my $end = time + 5;
    while (time < $end) {
        return 1 if slurp($file) =~ $re;
        sleep 0.05;
    }
    return 0;
}

get($port, '/l?cc=max-age%3D60', headers => { Referer => 'http://r.example/',
                                              'User-Agent' => 'test "agent"' });
get($port, '/l?cc=max-age%3D60');
ok(wait_match($log, qr/cache=HIT/), 'access log written');
my @lines = split /\n/, slurp($log);
like($lines[0], qr{^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /l\?cc=max-age%3D60 HTTP/1\.1" 200 \d+ "http://r\.example/" "test \\"agent\\"" cache=MISS time=[\d.]+ origin=[\d.]+ pid=\d+$},
     'miss line: Combined Log Format, cache status, timings, pid');
like($lines[1], qr{" 200 \d+ "-" "-" cache=HIT time=[\d.]+ origin=- pid=\d+$},
     'hit line');

rename $log, "$log.1" or die;
$d->signal('USR1');
sleep 0.3;
get($port, '/after-rotate');
ok(wait_match($log, qr{/after-rotate}), 'SIGUSR1: a new file after rotation');
unlike(slurp("$log.1"), qr{/after-rotate}, 'nothing more in the old file');

my $m = http_get(host => '127.0.0.1', port => $mport, path => '/metrics');
is($m->{status}, 200, 'metrics: 200');
like($m->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
     'metrics: Prometheus text format');
like($m->{body}, qr/^# TYPE cached_hits_total counter$/m, 'a TYPE line');
like($m->{body}, qr/^cached_hits_total\{worker="0"\} [1-9]\d*$/m, 'hits per worker');
like($m->{body}, qr/^cached_objects [1-9]\d*$/m, 'objects gauge');
like($m->{body}, qr/^cached_memory_used_bytes \d+$/m, 'memory gauge');
like($m->{body}, qr/^cached_evictions_total \d+$/m, 'evictions');
is($d->stop, 0, 'clean stop');
done_testing;
