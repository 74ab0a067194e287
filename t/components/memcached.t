#!/usr/bin/perl
# The memcached helper: a real memcached, the text-protocol client, a crash
# and a restart on the same port.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;

use SJ::Net;
use SJ::Memcached;

my $why = SJ::Memcached->skip_reason;
plan skip_all => $why if $why;

my $mc = SJ::Memcached->start(memory => 16);
ok($mc->pid, 'memcached started, pid ' . $mc->pid);
like($mc->cmd('version'), qr/^VERSION \d+\.\d+/, 'version');

ok($mc->set('greeting', "hello\r\nworld"), 'set');
is($mc->get('greeting'), "hello\r\nworld", 'get returns the bytes set');
my ($v, $flags) = do { $mc->set('f', 'x', 0, 42); $mc->get('f') };
is($flags, 42, 'flags round trip');
is($mc->get('absent'), undef, 'missing key is undef');
my $big = 'b' x 100_000;
ok($mc->set('big', $big), 'set 100 kB');
is(length($mc->get('big') // ''), 100_000, 'get 100 kB');

my $st = $mc->stats;
is($st->{curr_items}, 3, 'stats curr_items');
cmp_ok($st->{get_hits}, '>=', 3, 'stats get_hits');
is($st->{get_misses}, 1, 'stats get_misses');
is($st->{limit_maxbytes}, 16 * 1024 * 1024, 'memory option applied');

ok($mc->delete('greeting'), 'delete');
is($mc->get('greeting'), undef, 'deleted');

# Crash: connections are refused, the port stays ours.
my $port = $mc->port;
my $pid = $mc->pid;
$mc->kill;
ok(!kill(0, $pid), 'process gone after kill');
ok(port_is_closed('127.0.0.1', $port), 'connect refused after kill');
ok(!eval { $mc->get('f'); 1 }, 'client reports the dead server');
like($@, qr/connect/, "error: $@");

$mc->start;
is($mc->port, $port, 'restarted on the same port');
isnt($mc->pid, $pid, 'new process');
is($mc->get('f'), undef, 'cache empty after restart');
ok($mc->set('f', 'again'), 'set after restart');
is($mc->get('f'), 'again', 'get after restart');

is($mc->stop, 0, 'stopped cleanly on SIGTERM');
ok(port_is_closed('127.0.0.1', $port), 'port closed after stop');

$mc->restart;
is($mc->cmd('version') =~ /^VERSION/ ? 1 : 0, 1, 'restart from stopped');
$mc->stop;

done_testing();
