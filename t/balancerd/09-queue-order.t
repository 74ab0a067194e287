#!/usr/bin/perl
# The pool's queue is first-in, first-out across workers: with two
# workers, a node at maxconn 1 and requests queued in both, a freed slot
# goes to the oldest request whichever worker holds it (the worker that
# freed it wakes the other one). Real Apache + mod_php node.
#
# Which worker accepts a connection is the kernel's choice, and it often
# gives one worker all of them; so each round places its queued requests
# itself: the first half is sent while one worker is stopped (SIGSTOP),
# the second half while the other is, so both workers hold queued
# requests, interleaved in age.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Net qw(http_send http_read);
use SJ::Apache;

if (my $why = SJ::Apache::skip_reason()) {
    plan skip_all => $why;
}

my $t = SJ::Test->new;
my $port = $t->port('http');
my $php = SJ::Apache->start(name => 'php1', dir => $t->dir, maxclients => 12);

$t->write_conf(
    pools => qq{php: { maxconn = 1; queue_timeout = 30.0;
        nodes = ( { name = "php1"; address = "${\ $php->address}"; } ); };},
    balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php"; workers = 2;},
);
my $d = $t->start('balancerd');
my @workers = $d->wait_children(2);
is(scalar @workers, 2, 'two workers');

# Which worker holds each of our connections (by the local port of the
# client side), from ss.
sub owners {
    my %by_port;
    for my $line (`ss -Htnp state established '( sport = :$port )' 2>/dev/null`) {
        my ($peer) = $line =~ /\s127\.0\.0\.1:$port\s+127\.0\.0\.1:(\d+)/ or next;
        my ($pid) = $line =~ /pid=(\d+)/ or next;
        $by_port{$peer} = $pid;
    }
    return \%by_port;
}

# Warm both workers up (their first request costs more, much more under
# a sanitizer), so that the queued requests below take their tickets in
# the order they are sent.
for my $sock (map { http_send(host => '127.0.0.1', port => $port,
                              path => '/index.php') } 1 .. 10) {
    http_read($sock, timeout => 10);
}

# Sends request $n of round $round; returns its socket once a worker has
# accepted it (seen in ss), so that the next one is placed after it.
sub send_queued {
    my ($round, $n) = @_;
    my $sock = http_send(host => '127.0.0.1', port => $port,
                         path => "/slow.php?t=0.2&r=$round&n=$n");
    my $end = time + 5;
    sleep 0.02 until owners()->{ $sock->sockport } || time > $end;
    sleep 0.05;  # and has read and queued it
    return $sock;
}

my $rounds = 0;
my $spread = 0;
for my $round (1 .. 3) {
    my $hold = http_send(host => '127.0.0.1', port => $port,
                         path => '/slow.php?t=4');
    sleep 0.2;
    # Alternate which worker takes the older half.
    my ($first, $second) = $round % 2 ? @workers : reverse @workers;
    my @q;
    for my $half ([$second, 1 .. 4], [$first, 5 .. 8]) {
        my ($stopped, @n) = @$half;
        kill 'STOP', $stopped;
        push @q, send_queued($round, $_) for @n;
        kill 'CONT', $stopped;
    }
    my $own = owners();
    my %pids = map { ($own->{ $_->sockport } // 0) => 1 } @q;
    delete $pids{0};
    my @status = map { http_read($_, timeout => 20)->{status} } @q;
    http_read($hold, timeout => 5);
    is("@status", join(' ', (200) x 8), "round $round: all served");
    # The node served them one at a time (maxconn 1); its access log has
    # them in the order it finished them (Apache logs after answering).
    $php->wait_requests_count(8, 5, qr/[?&]r=$round&n=/);
    my @order = map { /[?&]r=$round&n=(\d+)/ ? $1 : () }
                $php->access_log_lines;
    is("@order", '1 2 3 4 5 6 7 8',
       "round $round: served in the order they came ("
       . scalar(keys %pids) . ' worker(s) held them)');
    $spread++ if keys %pids == 2;
    $rounds++;
}
is($spread, $rounds, 'every round had queued requests in both workers');

$d->stop;
$php->stop;
done_testing;
