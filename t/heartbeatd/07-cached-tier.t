#!/usr/bin/perl
# heartbeatd in front of cached's shared memcached tier, all real: a killed
# memcached is reported down to cached, which stops using it (its keys go
# to the other node, every request is still answered); restarted, it is
# reported up and cached uses it again.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use SJ::Test;
use SJ::Net qw(http_get);
use SJ::Apache;
use SJ::Memcached;

if (my $why = SJ::Apache->skip_reason // SJ::Memcached->skip_reason) {
    plan skip_all => $why;
}

my $t = SJ::Test->new;
my $origin = SJ::Apache->start(name => 'origin', dir => $t->dir);
# Static files: Apache gives them Last-Modified, so they are cacheable.
for my $i (1 .. 60) {
    open my $fh, '>', $origin->docroot . "/f$i.txt" or die $!;
    print $fh "file $i\n" x 10;
}
my @mc = map { SJ::Memcached->start(dir => $t->dir) } 1 .. 2;
my $port = $t->port('http');
$t->write_conf(
    pools => qq{memcache: {
        check = { type = "memcached"; interval = 0.2; timeout = 0.5;
                  rise = 1; fall = 1; };
        nodes = ( { name = "mc1"; address = "127.0.0.1:${\ $mc[0]->port}"; },
                  { name = "mc2"; address = "127.0.0.1:${\ $mc[1]->port}"; } );
        };},
    cached => qq{listen = ( "127.0.0.1:$port" );
        origin = "${\ $origin->address}"; workers = 1;
        shared_tier = "memcache";},
    heartbeatd => qq{node = "lb1"; notify = ( "cached" );},
);
my $cd = $t->start('cached');
my $hb = $t->start('heartbeatd');

# How many of cached's objects ("sj:" keys) a memcached holds. Counting
# keys rather than get/set statistics, which heartbeatd's canary checks
# move too.
sub objects {
    my ($m) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:${\ $m->port}",
                                  Timeout => 2) or return 0;
    print $s "lru_crawler metadump all\r\n";
    my $n = 0;
    while (my $l = <$s>) {
        last if $l =~ /^(END|ERROR|CLIENT_ERROR)/;
        $n++ if $l =~ /^key=sj%3A/;
    }
    return $n;
}
# Waits until memcached $m holds at least $n objects; returns the count.
sub wait_objects {
    my ($m, $n) = @_;
    my $end = time + 3;
    sleep 0.05 while objects($m) < $n && time < $end;
    return objects($m);
}
# How many times cached logged that heartbeatd reported mc1 $state.
sub reports {
    my ($state) = @_;
    return scalar(() = $cd->log =~ /memcache\/mc1: reported $state/g);
}
sub wait_reports {
    my ($state, $n) = @_;
    my $end = time + 5;
    sleep 0.05 while reports($state) < $n && time < $end;
    return reports($state) >= $n;
}
# Fetches f$from..f$to once each; returns how many were answered 200.
sub fetch {
    my ($from, $to) = @_;
    my $ok = 0;
    for my $i ($from .. $to) {
        my $r = http_get(host => '127.0.0.1', port => $port,
                         path => "/f$i.txt", timeout => 5);
        $ok++ if $r->{status} == 200 && $r->{body} eq "file $i\n" x 10;
    }
    return $ok;
}

ok(wait_reports('up', 1), 'cached told mc1 is up');
is(fetch(1, 20), 20, 'twenty misses answered');
sleep 0.3;  # the tier's sets are fire and forget
my @o1 = map { objects($_) } @mc;
ok($o1[0] > 0 && $o1[1] > 0 && $o1[0] + $o1[1] == 20,
   'the twenty objects are spread over both memcached nodes')
    or diag "objects: @o1";

$mc[0]->kill;
my $killed = time;
ok(wait_reports('down', 1), 'cached told mc1 is down');
diag(sprintf 'mc1 reported down to cached %.2f s after the kill',
     time - $killed);
is(fetch(21, 40), 20, 'with mc1 dead every request is answered');
is(wait_objects($mc[1], $o1[1] + 20), $o1[1] + 20,
   'and all twenty new objects went to mc2: cached stopped using mc1');

$mc[0]->start;
ok(wait_reports('up', 2), 'cached told mc1 is up again');
is(objects($mc[0]), 0, 'the restarted mc1 is empty');
# A connection refused while mc1 was coming back may still have it skipped
# for the tier's retry time (1 s by default); then it is used again.
sleep 1.2;
is(fetch(41, 60), 20, 'twenty more misses answered');
cmp_ok(wait_objects($mc[0], 1), '>', 0, 'mc1 is used again')
    or diag 'mc2 holds ' . objects($mc[1]) . ', cached log: ',
            $cd->log =~ /(.*mc1.*\n)/g;

is($hb->stop, 0, 'heartbeatd stopped');
is($cd->stop, 0, 'cached stopped');
$_->stop for @mc;
$origin->stop;
done_testing;
