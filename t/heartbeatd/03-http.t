#!/usr/bin/perl
# http checks against real Apache+mod_php nodes: a killed node is down
# within fall x interval + timeout and back after rise checks; a node that
# accepts and never answers times out without delaying the others; expected
# status and body; maintenance and "check now" on the control socket.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Net qw(free_port);
use SJ::Apache;

my $why = SJ::Apache->skip_reason;
plan skip_all => $why if $why;

my $t = SJ::Test->new;
my $php1 = SJ::Apache->start(name => 'php1', dir => $t->dir);
my $php2 = SJ::Apache->start(name => 'php2', dir => $t->dir);
# Accepts from its backlog, never reads, never answers.
my $hole = IO::Socket::INET->new(LocalAddr => '127.0.0.1', Listen => 64,
                                 ReuseAddr => 1) or die "listen: $!";
my $hole_port = $hole->sockport;

my ($interval, $timeout, $rise, $fall) = (0.2, 0.5, 2, 2);
$t->write_conf(
    pools => qq{
        php: { check = { type = "http"; path = "/health.php";
                         expect_body = "ok"; interval = $interval;
                         timeout = $timeout; rise = $rise; fall = $fall; };
               nodes = (
            { name = "php1"; address = "${\ $php1->address}"; },
            { name = "php2"; address = "${\ $php2->address}"; },
            { name = "hole"; address = "127.0.0.1:$hole_port"; } ); };
        body: { check = { type = "http"; path = "/health.php";
                          expect_body = "no such text"; interval = 0.2; };
                nodes = ( { name = "b1"; address = "${\ $php1->address}"; } ); };
        status: { check = { type = "http"; path = "/missing.php";
                            expect_status = [ 200, 301 ]; interval = 0.2; };
                  nodes = ( { name = "s1"; address = "${\ $php1->address}"; } ); };
    },
);
my $hb = $t->start('heartbeatd');

sub nodes {
    my ($st, $body) = $hb->ctl('show nodes');
    return { map { m{^(\S+) \S+ (\S+) (.*)$} ? ($1 => [$2, $3]) : () }
             split /\n/, $body };
}
sub checks {
    my ($st, $body) = $hb->ctl('show checks');
    my %c;
    for (split /\n/, $body) {
        my ($name, $type, $state, $rest) = split / /, $_, 4;
        my %kv = $rest =~ /(\w+)=("[^"]*"|\S+)/g;
        $c{$name} = { type => $type, state => $state, %kv };
    }
    return \%c;
}
sub wait_state {
    my ($node, $state, $timeout) = @_;
    my $end = time + ($timeout // 5);
    while (time < $end) {
        my $n = nodes()->{$node};
        return 1 if $n && $n->[0] eq $state;
        sleep 0.02;
    }
    return 0;
}

ok(wait_state('php/php1', 'up'), 'php1 up');
ok(wait_state('php/php2', 'up'), 'php2 up');
ok(wait_state('php/hole', 'down', 3), 'a node that never answers is down');
like(nodes()->{'php/hole'}[1], qr/timeout after 0\.5 s/, '... on timeout');
ok(wait_state('body/b1', 'down'), 'body not found: down');
like(nodes()->{'body/b1'}[1], qr/body lacks \\"no such text\\"/, '... with why');
ok(wait_state('status/s1', 'down'), 'unexpected status: down');
like(nodes()->{'status/s1'}[1], qr/status 404/, '... with the status');

# The hole costs each of its checks a full timeout; php2 is still checked
# every interval meanwhile.
my $c0 = checks()->{'php/php2'}{checks};
my $h0 = checks()->{'php/hole'}{checks};
sleep 2;
my $c1 = checks()->{'php/php2'}{checks};
my $h1 = checks()->{'php/hole'}{checks};
diag("in 2 s: php2 checked " . ($c1 - $c0) . " times, the hole "
     . ($h1 - $h0));
cmp_ok($c1 - $c0, '>=', 2 / ($interval * 1.1) - 2,
       'php2 checked at its interval despite the hole');
cmp_ok($h1 - $h0, '<=', 2 / $timeout + 1, 'the hole: one check per timeout');
like(checks()->{'php/php2'}{latency}, qr/^\d+\.\dms$/, 'latency shown');

# ---- kill php1: down within fall x interval + timeout
my $t0 = time;
$php1->kill;
ok(wait_state('php/php1', 'down', 5), 'killed php1 goes down');
my $took = time - $t0;
my $bound = $fall * $interval * 1.1 + $timeout;
diag(sprintf 'php1 down %.2f s after the kill (bound %.2f s)', $took,
     $bound);
cmp_ok($took, '<=', $bound + 0.2, 'within fall x interval + timeout');
like(nodes()->{'php/php1'}[1],
     qr/^"after 2 failed checks: connect: connection refused"$/, 'reason');
is(nodes()->{'php/php2'}[0], 'up', 'php2 unaffected');

$t0 = time;
$php1->start;
ok(wait_state('php/php1', 'up', 5), 'restarted php1 comes back');
diag(sprintf 'php1 up %.2f s after its restart', time - $t0);
like(nodes()->{'php/php1'}[1], qr/after 2 passed checks: status 200/,
     'after rise passed checks');
my $log = $hb->log;
my @changes = $log =~ m{notice: (php/php1: \S+.*)}g;
is_deeply([map { (split / /)[1] } @changes], ['up', 'down', 'up'],
          'each change logged once') or diag explain \@changes;

# ---- maintenance
my ($st, $body) = $hb->ctl('node maintenance php/php2 on');
is($st, 200, 'maintenance on');
is(nodes()->{'php/php2'}[0], 'maintenance', 'shown as maintenance');
my $n0 = checks()->{'php/php2'}{checks};
sleep 0.6;
is(checks()->{'php/php2'}{checks}, $n0, 'not checked in maintenance');
($st) = $hb->ctl('check now php/php2');
is($st, 400, 'check now refused in maintenance');
($st) = $hb->ctl('node maintenance php/php2 off');
is($st, 200, 'maintenance off');
ok(wait_state('php/php2', 'up', 3), 'checked again: up at the first pass');
($st) = $hb->ctl('node maintenance php/nope on');
is($st, 404, 'unknown node: 404');
($st) = $hb->ctl('node maintenance php/php2 sideways');
is($st, 400, 'bad argument: 400');

# ---- check now: a check at once, not at the next interval
$hb->ctl('node maintenance status/s1 on');
$hb->ctl('node maintenance status/s1 off');
my $before = checks()->{'php/php2'}{checks};
($st, $body) = $hb->ctl('check now php/php2');
is($st, 200, 'check now');
my $end = time + 1;
sleep 0.01 while checks()->{'php/php2'}{checks} == $before && time < $end;
cmp_ok(checks()->{'php/php2'}{checks}, '>', $before, 'a check ran');

($st, $body) = $hb->ctl('status');
like($body, qr/^nodes: \d+ up \d+ down/m, 'status counts nodes');

# sjctl status shows heartbeatd's table of checks after the daemons.
my ($rc, $out) = $t->run($t->binary('sjctl'), '-f', $t->conf_file, 'status');
like($out, qr/^heartbeatd\s+running\s/m, 'sjctl status: heartbeatd running');
like($out, qr/^php\/php2\s+http\s+up\s+\S+\s+pass\s+\d+\.\dms\s/m,
     'sjctl status: the checks table, php2 up');
like($out, qr/^php\/hole\s+http\s+down\s.*timeout after 0\.5 s/m,
     'sjctl status: the hole down, with the reason');
is($hb->stop, 0, 'clean stop');
$php1->stop;
$php2->stop;
done_testing;
