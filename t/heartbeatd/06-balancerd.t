#!/usr/bin/perl
# heartbeatd in front of a real balancerd over real Apache+mod_php nodes:
# a killed node stops receiving requests within fall x interval + one
# timeout (measured and printed) with no failed client request, comes back
# after rise checks, and a balancerd restarted while a node is down learns
# it from heartbeatd's snapshot and routes around it at once.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Net qw(http_get);
use SJ::Apache;
use SJ::Balancerd qw(ctl_rows);

if (my $why = SJ::Apache->skip_reason) {
    plan skip_all => $why;
}

my $t = SJ::Test->new;
my $port = $t->port('http');
my @php = map { SJ::Apache->start(name => "php$_", dir => $t->dir) } 1 .. 2;
my ($interval, $timeout, $rise, $fall) = (0.2, 0.5, 2, 2);
$t->write_conf(
    pools => qq{php: {
        check = { type = "http"; path = "/health.php"; interval = $interval;
                  timeout = $timeout; rise = $rise; fall = $fall; };
        nodes = ( { name = "php1"; address = "${\ $php[0]->address}"; },
                  { name = "php2"; address = "${\ $php[1]->address}"; } ); };},
    balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php";
        workers = 1;},
    heartbeatd => qq{node = "lb1"; notify = ( "balancerd" );},
);
my $bd = $t->start('balancerd');
my $hb = $t->start('heartbeatd');

sub node_row {
    my ($name) = @_;
    my ($st, $body) = $bd->ctl('show nodes');
    my ($row) = grep { $_->{NODE} eq "php/$name" } ctl_rows($body);
    return $row // {};
}
sub wait_health {
    my ($name, $want, $limit) = @_;
    my $end = time + ($limit // 5);
    while (time < $end) {
        my $r = node_row($name);
        return 1 if ($r->{HEALTH} // '') eq $want
            && ($r->{SOURCE} // '') =~ /heartbeat/;
        sleep 0.02;
    }
    return 0;
}
# One request through balancerd: the node that answered, or "fail".
sub hit {
    my $r = http_get(host => '127.0.0.1', port => $port, path => '/index.php',
                     timeout => 5);
    return $r->{status} == 200 ? ($r->{headers}{'x-sj-node'} // '?')
                               : "fail $r->{status}";
}

ok(wait_health('php1', 'up') && wait_health('php2', 'up'),
   'balancerd told both nodes are up');
my %seen;
$seen{ hit() }++ for 1 .. 20;
ok($seen{php1} && $seen{php2}, 'both nodes serve') or diag explain \%seen;

# ---- kill php1 while clients keep sending
$php[0]->kill;
my $killed = time;
my ($down_at, %during);
my $end = time + 5;
while (time < $end) {
    $during{ hit() }++;
    if (!$down_at && wait_health('php1', 'down', 0.001)) {
        $down_at = time;
        last;
    }
}
ok($down_at, 'balancerd marks php1 down on heartbeatd\'s word');
my $took = ($down_at // time) - $killed;
my $bound = $fall * $interval + $timeout;
diag(sprintf 'php1 out of rotation %.2f s after it died (bound %.2f s)',
     $took, $bound);
cmp_ok($took, '<=', $bound + 0.2, 'within fall x interval + one timeout');
like(node_row('php1')->{REASON} // '', qr/refused|failed/,
     'the reason travels with it');
my %after;
$after{ hit() }++ for 1 .. 20;
is_deeply([ grep { !/^php2$/ } keys %during, keys %after ], [],
          'no failed client request, and only php2 serves once php1 is down')
    or diag explain { during => \%during, after => \%after };

# ---- back after rise checks
$php[0]->start;
ok(wait_health('php1', 'up', 5), 'php1 back after it answers again');
my $before = $php[0]->requests_count;
%seen = ();
$seen{ hit() }++ for 1 .. 20;
ok($seen{php1} && $php[0]->requests_count > $before,
   'php1 receives requests again');

# ---- balancerd restarted while php1 is down: the snapshot routes at once
$php[0]->kill;
ok(wait_health('php1', 'down', 5), 'php1 down again');
is($bd->stop, 0, 'balancerd stopped');
$bd = $t->start('balancerd');
ok(wait_health('php1', 'down', 3), 'restarted balancerd got the snapshot');
my $fails0 = node_row('php1')->{ERRORS};
%seen = ();
$seen{ hit() }++ for 1 .. 20;
is_deeply(\%seen, { php2 => 20 }, 'every request goes to php2');
is(node_row('php1')->{ERRORS}, $fails0, 'no attempt was made on php1');

is($hb->stop, 0, 'heartbeatd stopped');
is($bd->stop, 0, 'balancerd stopped');
$_->stop for @php;
done_testing;
