#!/usr/bin/perl
# A balancerd worker that dies without giving back what it held (SIGKILL):
# its in-flight slots on the node (maxconn) and its place in the pool's
# queue come back when the parent reaps it, so the node keeps its full
# capacity and the queue its room. Without that, the node would stay "at
# maxconn" for good and every later request would wait in the queue until
# it timed out. Real Apache + mod_php node.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Net qw(http_get http_send http_read);
use SJ::Apache;
use SJ::Balancerd qw(ctl_rows);

if (my $why = SJ::Apache::skip_reason()) {
    plan skip_all => $why;
}

my $t = SJ::Test->new;
my $port = $t->port('http');
my $php = SJ::Apache->start(name => 'php1', dir => $t->dir, maxclients => 10);

$t->write_conf(
    pools => qq{php: { maxconn = 2; queue_timeout = 20.0; maxqueue = 5;
        nodes = ( { name = "php1"; address = "${\ $php->address}"; } ); };},
    balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php"; workers = 1;},
);
my $d = $t->start('balancerd');

sub counts {
    my (undef, $nodes) = $d->ctl('show nodes');
    my (undef, $pools) = $d->ctl('show pools');
    my ($n) = ctl_rows($nodes);
    my ($p) = ctl_rows($pools);
    return ($n->{ACTIVE} // -1, $p->{QUEUED} // -1);
}

# Waits until show nodes / show pools say ($active, $queued).
sub wait_counts {
    my ($active, $queued, $timeout) = @_;
    my $end = time + $timeout;
    my @c;
    while (time < $end) {
        @c = counts();
        return @c if $c[0] == $active && $c[1] == $queued;
        sleep 0.05;
    }
    return @c;
}

my @held = map { http_send(host => '127.0.0.1', port => $port,
                           path => '/slow.php?t=4') } 1 .. 3;
is(scalar(grep { defined } @held), 3, 'three slow requests sent');
my @c = wait_counts(2, 1, 5);
is_deeply(\@c, [2, 1], 'two in flight at the node (its maxconn), one queued');

my ($worker) = $d->wait_children(1);
ok($worker, "the worker is pid " . ($worker // '?'));
kill 'KILL', $worker;
my @now;
my $end = time + 10;
while (time < $end) {
    @now = $d->children;
    last if @now == 1 && $now[0] != $worker;
    sleep 0.05;
}
ok(@now == 1 && $now[0] != $worker, 'the parent started a new worker');

# The clients of the dead worker lost their connections.
for my $s (@held) {
    my $r = http_read($s, timeout => 5);
    isnt($r->{status}, 200, 'a request of the killed worker got no answer');
}

@c = wait_counts(0, 0, 2);
is_deeply(\@c, [0, 0], 'its node slots and queue place were given back');
ok($d->wait_log(qr/worker \(pid $worker\) ended holding 2 requests in flight and 1 queued/),
   'and the parent said so');

# The node has its whole maxconn again: two requests at once are served
# without waiting for the queue timeout (20 s).
my $t0 = time;
my @socks = map { http_send(host => '127.0.0.1', port => $port,
                            path => '/index.php') } 1 .. 2;
my @resp = map { http_read($_, timeout => 10) } @socks;
is(scalar(grep { $_->{status} == 200 } @resp), 2,
   'two new requests served at once');
cmp_ok(time - $t0, '<', 5, 'without waiting in the queue');
@c = wait_counts(0, 0, 2);
is_deeply(\@c, [0, 0], 'and nothing is left held');

# A worker that ends cleanly gave everything back itself: a reload leaves
# the counts at zero and says nothing.
my ($st) = $d->ctl('reload');
is($st, 200, 'reload');
$d->wait_children(1);
sleep 0.5;
@c = counts();
is_deeply(\@c, [0, 0], 'counts still zero after a reload');
unlike($d->log, qr/worker \(pid (?!$worker\))\d+\) ended holding/,
       'no other worker reported holding anything');

$d->stop;
$php->stop;
done_testing;
