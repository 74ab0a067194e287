#!/usr/bin/perl
# The Apache/PHP node helper: a real Apache with mod_php serves the test PHP
# app, counts concurrent requests, stops, and comes back on the same port.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time);

use SJ::Net;
use SJ::Apache;

my $why = SJ::Apache->skip_reason;
plan skip_all => $why if $why;

my $php = SJ::Apache->start(name => 'php7', maxclients => 4);
ok($php->pid, 'apache started, pid ' . $php->pid);
ok(!port_is_closed('127.0.0.1', $php->port), 'port is open');

my $r = http_get($php->url('/index.php'));
is($r->{status}, 200, 'index.php 200');
like($r->{body}, qr/^node=php7$/m, 'index.php names the node');
like($r->{body}, qr/^php=\d+\.\d+/m, 'PHP ran');
unlike($r->{body}, qr/<\?php/, 'not the source');
is($r->{headers}{'x-sj-node'}, 'php7', 'X-SJ-Node header');

$r = http_get($php->url('/'));
like($r->{body}, qr/^node=php7$/m, '/ runs index.php');

$r = http_get($php->url('/health.php'));
is($r->{status}, 200, 'health.php 200');
is($r->{body}, "ok\n", 'health.php body');

$r = http_get($php->url('/common.inc'));
is($r->{status}, 403, 'include file not served');

$r = http_get($php->url('/missing.php'));
is($r->{status}, 404, 'missing page 404');

# The session lives in the node's own session directory.
$r = http_get($php->url('/session.php'));
like($r->{body}, qr/^count=1$/m, 'new session');
my ($cookie) = ($r->{headers}{'set-cookie'} // '') =~ /^(PHPSESSID=[^;]+)/;
ok($cookie, 'session cookie set');
$r = http_get($php->url('/session.php'), headers => { Cookie => $cookie });
like($r->{body}, qr/^count=2$/m, 'session resumed');

# The start-up probe is not logged; every request above is (7 of them).
is($php->wait_requests_count(7, 5), 7, 'access log counts the requests');
is($php->requests_count(qr{/health\.php}), 1, 'counted by path');

# Two requests in flight at once: both sent before either is read.
$php->concurrency_reset;
my $t0 = time;
my @socks = map { http_send($php->url('/concurrency.php?t=1')) } 1 .. 2;
ok(@socks == 2 && $socks[0] && $socks[1], 'two concurrent requests sent');
my @resp = map { http_read($_, timeout => 10) } @socks;
my $elapsed = time - $t0;
is($_->{status}, 200, 'concurrency.php 200') for @resp;
is($php->concurrency_max, 2, 'two requests seen at once');
cmp_ok($elapsed, '<', 1.9, sprintf('served in parallel (%.2fs)', $elapsed));
$r = http_get($php->url('/concurrency.php?read=1'));
like($r->{body}, qr/^cur=0 max=2$/m, 'counter back to 0, max via PHP');

$r = http_get($php->url('/slow.php?t=0.3'));
like($r->{body}, qr/^slept=0\.3 node=php7$/m, 'slow.php');

# Stop: the port closes, no process is left.
my $pid = $php->pid;
my $status = $php->stop;
is($status, 0, 'stopped cleanly on SIGTERM');
ok(!kill(0, $pid), 'apache process gone');
ok(port_is_closed('127.0.0.1', $php->port), 'port closed after stop');
is(http_get($php->url('/health.php'))->{status}, 0, 'request refused');

# Start again on the same port, then crash it.
$php->start;
isnt($php->pid, $pid, 'restarted with a new pid');
is(http_get($php->url('/health.php'))->{status}, 200, 'answers after restart');
$pid = $php->pid;
$php->kill;
ok(!kill(0, $pid), 'killed');
ok(port_is_closed('127.0.0.1', $php->port), 'port closed after kill');
$php->restart;
like(http_get($php->url('/'))->{body}, qr/^node=php7$/m,
     'answers after a crash and restart');

# Two nodes side by side, told apart by name.
my $php2 = SJ::Apache->start(name => 'php8', dir => $php->dir . '/..');
isnt($php2->port, $php->port, 'second node on its own port');
like(http_get($php2->url('/'))->{body}, qr/^node=php8$/m, 'second node name');

$php2->stop;
$php->stop;
done_testing();
