#!/usr/bin/perl
# heartbeatd tells balancerd and cached (here: scripted control sockets that
# record every line) about node states: each change once, in order; a full
# snapshot on every (re)connect; a daemon that is not running is retried,
# logged once, and gets its snapshot when it comes up.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Net qw(spawn stop_process free_port);

my $t = SJ::Test->new;
my $src = SJ::Test::srcdir();

# Nodes are plain listening sockets: the kernel completes a connect from
# the backlog, which is all a tcp check asks. Closing one refuses.
my %port = map { $_ => free_port() } qw(php1 php2 mc1);
my %sock;
sub node_up {
    my ($n) = @_;
    $sock{$n} = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $port{$n}, Listen => 64, ReuseAddr => 1)
        or die "listen $n: $!";
}
sub node_down { close delete $sock{$_[0]} }
node_up($_) for qw(php1 php2 mc1);

sub fake {
    my ($name) = @_;
    my $log = $t->dir . "/$name.lines";
    my $pid = spawn(cmd => [$^X, "$src/t/heartbeatd/fake_control.pl",
                            $t->ctl_path($name), $log],
                    name => "fake $name");
    SJ::Net::wait_for_path($t->ctl_path($name), 5) or die "fake $name";
    return $pid;
}

# The lines a fake received, without heartbeatd's keep-alive pings:
# [conn, line] each.
sub lines {
    my ($name) = @_;
    open my $fh, '<', $t->dir . "/$name.lines" or return ();
    return grep { $_->[1] ne 'ping' }
        map { chomp; [split /\t/, $_, 2] } <$fh>;
}
sub wait_lines {
    my ($name, $pred, $timeout) = @_;
    my $end = time + ($timeout // 5);
    while (time < $end) {
        my @l = lines($name);
        return @l if $pred->(@l);
        sleep 0.05;
    }
    return lines($name);
}
sub show_lines { join '', map { "    $_->[0] $_->[1]\n" } @_ }

my $check = 'type = "tcp"; interval = 0.1; timeout = 0.5; rise = 2; fall = 2;';
$t->write_conf(
    pools => qq{
        php: { check = { $check }; nodes = (
            { name = "php1"; address = "127.0.0.1:$port{php1}"; },
            { name = "php2"; address = "127.0.0.1:$port{php2}"; } ); };
        mc: { check = { $check }; nodes = (
            { name = "mc1"; address = "127.0.0.1:$port{mc1}"; } ); };
    },
    cached => qq{listen = ( "127.0.0.1:1" ); origin = "unix:/nonexistent";
                 shared_tier = "mc";},
    balancerd => qq{listen = ( "unix:/nonexistent" ); pool = "php";},
    heartbeatd => qq{notify = ( "balancerd", "cached" );},
);

my $bal = fake('balancerd');
my $hb = $t->start('heartbeatd');

# ---- connect, then the first results arrive as changes
my @l = wait_lines('balancerd', sub { grep({ $_->[1] =~ m{php2 up} } @_)
                                      && grep({ $_->[1] =~ m{php1 up} } @_) });
is(scalar(grep { $_->[1] =~ /^node health php\/php1 up / } @l), 1,
   'php1 up sent once') or diag show_lines(@l);
is(scalar(grep { $_->[1] =~ /^node health php\/php2 up / } @l), 1,
   'php2 up sent once');
is(scalar(grep { $_->[1] =~ m{mc/} } @l), 0,
   'balancerd is not told about the memcached pool');
my $conn1 = $l[0][0];
is(scalar(grep { $_->[0] ne $conn1 } @l), 0, 'all on one connection');

# cached is not running: logged once, retried.
ok($hb->wait_log(qr/cached: cannot connect to \S+cached\.ctl/, 3),
   'missing cached logged');
sleep 1;
my $n = () = $hb->log =~ /cached: cannot connect/g;
is($n, 1, 'logged once per outage, not per retry');

# ---- a change: php1 goes away
my $t0 = time;
node_down('php1');
@l = wait_lines('balancerd', sub { grep { $_->[1] =~ m{php1 down} } @_ });
my $took = time - $t0;
my @down = grep { $_->[1] =~ m{^node health php/php1 down} } @l;
is(scalar @down, 1, 'php1 down sent once');
like($down[0][1] // '', qr{down "after 2 failed checks: connect: connection refused"},
     'with the reason');
diag(sprintf 'php1 down pushed %.2f s after it closed', $took);
cmp_ok($took, '<', 2 * 0.1 * 1.1 + 0.5 + 0.5, 'within fall x interval + timeout');
ok($hb->log =~ m{php/php1: down after 2 failed checks: connect: connection refused},
   'the change is logged with its reason');
sleep 0.5;
@l = lines('balancerd');
is(scalar(grep { $_->[1] =~ m{php1} } @l), 2, 'nothing more for php1 (up, down)')
    or diag show_lines(@l);
like($l[-1][1], qr{php1 down}, 'in order: the down comes last');

# ---- balancerd restarts: a fresh snapshot on the new connection
stop_process($bal);
$bal = fake('balancerd');
@l = wait_lines('balancerd', sub { grep({ $_->[0] ne $conn1 } @_) >= 2 }, 5);
my @snap = map { $_->[1] } grep { $_->[0] ne $conn1 } @l;
is_deeply([map { m{^node health (\S+ \S+)} ? $1 : $_ } @snap],
          ['php/php1 down', 'php/php2 up'], 'snapshot after reconnect')
    or diag show_lines(@l);
ok($hb->log =~ /balancerd: control connection lost/, 'loss logged');

# ---- cached comes up: snapshot with its pool and the origin
my $cac = fake('cached');
@l = wait_lines('cached', sub { grep { $_->[1] =~ /^origin/ } @_ }, 5);
is_deeply([map { $_->[1] =~ m{^(node health \S+ \S+|origin \S+)} ? $1 : $_->[1] } @l],
          ['node health mc/mc1 up', 'origin up'], 'cached snapshot')
    or diag show_lines(@l);

# ---- no PHP node up: origin down to cached; one back: origin up
node_down('php2');
@l = wait_lines('cached', sub { grep { $_->[1] eq 'origin down' } @_ });
is(scalar(grep { $_->[1] eq 'origin down' } @l), 1, 'origin down once');
node_up('php1');
@l = wait_lines('cached', sub { 2 == grep { $_->[1] eq 'origin up' } @_ });
is_deeply([map { $_->[1] } grep { $_->[1] =~ /^origin/ } @l],
          ['origin up', 'origin down', 'origin up'], 'origin up again, in order');
@l = wait_lines('balancerd', sub { grep { $_->[0] ne $conn1 && $_->[1] =~ m{php1 up} } @_ });
is_deeply([map { $_->[1] =~ m{^node health (\S+ \S+)} ? $1 : $_->[1] }
           grep { $_->[0] ne $conn1 } @l],
          ['php/php1 down', 'php/php2 up', 'php/php2 down', 'php/php1 up'],
          'balancerd got each change once, in order')
    or diag show_lines(@l);
like((grep { $_->[1] =~ m{php1 up} } @l)[-1][1],
     qr{up "after 2 passed checks: connected"}, 'up after rise checks');

# ---- status shows the links and the nodes
my ($st, $body) = $hb->ctl('status');
like($body, qr/^notify balancerd: connected$/m, 'status: balancerd link');
like($body, qr{^node php/php2: down$}m, 'status: node table');
like($body, qr/^origin: up$/m, 'status: origin');

is($hb->stop, 0, 'heartbeatd stops cleanly');
stop_process($_) for $bal, $cac;
done_testing;
