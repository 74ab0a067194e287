#!/usr/bin/perl
# Connect timeouts against a node whose SYNs vanish: a network namespace
# behind a veth pair, with a permanent neighbour entry on the host side
# naming a MAC address nobody has, so that nothing ever answers. A request
# that meets such a node is retried on another one invisibly (costing one
# connect_timeout); when every node it may try times out, the client gets
# 503 with Retry-After (as HAProxy answers when it cannot connect to any
# server) within connect_timeout x (retries + 1); passive health takes the
# node out after passive_fall timeouts.
#
# Needs root and ip(8); skipped otherwise. Uses 198.51.100.0/24 only.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Balancerd qw(raw_exchange ctl_rows);

my $ip = (grep { -x } map { "$_/ip" } qw(/usr/sbin /sbin /usr/bin /bin))[0];
plan skip_all => 'needs root to create a network namespace' if $> != 0;
plan skip_all => 'needs ip(8) (iproute2)' unless $ip;

my $ns = "sjt-$$";
my ($va, $vb) = ("sjv${$}a", "sjv${$}b");
my $created = 0;
END {
    # By name, whatever happened above; deleting the namespace takes its
    # end of the pair, deleting ours takes both.
    if ($created) {
        system("$ip link del $va >/dev/null 2>&1");
        system("$ip netns del $ns >/dev/null 2>&1");
    }
}

sub run_ip {
    my $cmd = "$ip @_";
    system("$cmd 2>&1") == 0 or die "$cmd failed\n";
}
$created = 1;
my $ok = eval {
    run_ip("netns add $ns");
    run_ip("link add $va type veth peer name $vb");
    run_ip("link set $vb netns $ns");
    run_ip("addr add 198.51.100.1/24 dev $va");
    run_ip("link set $va up");
    run_ip("-n $ns addr add 198.51.100.2/24 dev $vb");
    run_ip("-n $ns link set $vb up");
    # Frames for 198.51.100.2 go to a MAC address the namespace's end
    # does not have: it drops them, and no SYN-ACK or RST ever comes.
    run_ip("neigh replace 198.51.100.2 lladdr 02:00:00:00:00:01 dev $va nud permanent");
    1;
};
plan skip_all => "cannot set up the namespace: $@" unless $ok;

my $t = SJ::Test->new;
my $port = $t->port('http');
my $b1 = SJ::Balancerd::Backend->start(t => $t, name => 'b1');
my $ct = 0.4;
$t->write_conf(
    pools => qq{php: { balance = "roundrobin"; retries = 1; nodes = (
        { name = "h1"; address = "198.51.100.2:81"; },
        { name = "h2"; address = "198.51.100.2:82"; },
        { name = "h3"; address = "198.51.100.2:83"; },
        { name = "b1"; address = "${\ $b1->address}"; } ); };},
    balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php";
        connect_timeout = $ct; passive_fall = 3; passive_hold = 60.0;
        server_timeout = 5.0; access_log = "${\ $t->dir}/access.log";},
);
my $d = $t->start('balancerd');

sub get {
    my $t0 = time;
    my $r = raw_exchange(port => $port, timeout => 10,
        data => "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    return ($r, time - $t0);
}

sub node_row {
    my ($name) = @_;
    my ($st, $body) = $d->ctl('show nodes');
    my ($row) = grep { $_->{NODE} eq "php/$name" } ctl_rows($body);
    return $row // {};
}

# A pool of one black hole and one live node.
for my $n (qw(h2 h3)) {
    my ($st) = $d->ctl("node disable php/$n");
    is($st, 200, "disable $n");
}

# Round robin sends every other request to h1 first: three such requests
# time out there and go on to b1, each costing about connect_timeout.
my (@times, @bad);
for (1 .. 6) {
    my ($r, $dt) = get();
    push @bad, $r unless $r =~ m{\AHTTP/1\.1 200 .*node=b1\n\z}s;
    push @times, $dt;
}
is(scalar @bad, 0, 'every request answered 200 by b1 through the retries')
    or diag explain \@bad;
# Which requests met h1 is counted in the access log below; here, the
# three slowest waited for a connect timeout and none waited much more.
my @slow = (sort { $b <=> $a } @times)[0 .. 2];
ok(!grep({ $_ < $ct * 0.9 || $_ > $ct + 1.5 } @slow),
   'a request meeting the black hole costs about one connect timeout')
    or diag "@times";
ok($d->wait_log(qr{php/h1: connect: timed out}), 'connect timeouts logged');
ok($d->wait_log(qr{php/h1: marked down for 60s after 3 consecutive failures \(connect timeout\)}),
   'passive health: h1 down after passive_fall timeouts');
is(node_row('h1')->{HEALTH}, 'down', 'show nodes: h1 down');

# With h1 out, nothing waits for it any more (no retry: access log).
my ($r, $dt) = get();
like($r, qr{node=b1\n\z}, 'b1 answers');

# Only black holes: h1 back up (as heartbeatd would say), h2 and h3
# enabled, b1 disabled. retries = 1: two attempts, then 503.
$d->ctl('node health php/h1 up test');
$d->ctl("node enable php/$_") for qw(h2 h3);
$d->ctl('node disable php/b1');
$b1->clear;
($r, $dt) = get();
like($r, qr{\AHTTP/1\.1 503 Service Unavailable\r\n}, 'every connect timed out: 503');
like($r, qr{\r\nRetry-After: 1\r\n}, 'with Retry-After');
like($r, qr{no node could take the request \(timed out\)}, 'body says why');
ok($dt >= 2 * $ct * 0.9 && $dt < 2 * $ct + 1.5,
   'after connect_timeout x (retries + 1)') or diag $dt;
is(scalar(() = $b1->requests), 0, 'nothing reached the disabled node');

is($d->stop, 0, 'clean stop');
open my $fh, '<', $t->dir . '/access.log' or die;
my @log = <$fh>;
close $fh;
my @ok = grep { m{"GET /x HTTP/1\.1" 200 } } @log;
is(scalar @ok, 7, 'access log: seven answered requests');
is(scalar(grep { m{ b1 1 .* ok$} } @ok[0 .. 5]), 3,
   'access log: three of the first six met h1 and were retried once');
like($ok[6] // '', qr{ b1 0 [-\d.]+ [-\d.]+ [-\d.]+ [-\d.]+ ok$},
     'access log: no retry once h1 is down');
ok((grep { m{"GET /x HTTP/1\.1" 503 .* 1 [-\d.]+ [-\d.]+ [-\d.]+ [-\d.]+ connect-timeout$} } @log),
   'access log: the 503 ended in connect-timeout after one retry');
done_testing;
