#!/usr/bin/perl
# balancerd's TCP mode wired to the node table: connections follow the
# pool's writer as `node role` sets it, and a connection to the old writer
# is closed when the writer changes.
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More; use SJ::Test; use SJ::Balancerd qw(raw_exchange);
my $t = SJ::Test->new; my $port = $t->port('http'); my $tp = $t->port('tcp');
my $ti = $t->port('tcp-idle');
my @b = map { SJ::Balancerd::Backend->start(t => $t, name => "b$_") } 1..2;
$t->write_conf(pools => qq{php: { nodes = ( { name = "b1"; address = "${\ $b[0]->address}"; } ); };
  db: { nodes = ( { name = "m1"; address = "${\ $b[0]->address}"; }, { name = "m2"; address = "${\ $b[1]->address}"; } ); };},
  balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php"; tcp = ( { listen = "127.0.0.1:$tp"; pool = "db"; route = "writer"; },
    { listen = "127.0.0.1:$ti"; pool = "php"; idle_timeout = 0.5; connect_timeout = 0.5; } );});
my $d = $t->start('balancerd');
my $r = raw_exchange(port => $tp, data => "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout => 2);
is($r, '', 'no writer: connection closed without bytes');
$d->ctl('node role db/m2 writer');
$r = raw_exchange(port => $tp, data => "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout => 2);
like($r, qr/node=b2/, 'writer m2 reached');
$d->ctl('node role db/m1 writer');
$r = raw_exchange(port => $tp, data => "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout => 2);
like($r, qr/node=b1/, 'new writer m1 reached');
# A held connection to the writer closes when the writer changes.
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$tp") or die;
syswrite $s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
my $buf = '';
my $end = time + 3;
while (time < $end && $buf !~ /node=b1\n/) {
    sysread($s, $buf, 4096, length $buf) or last;
}
like($buf, qr/node=b1/, 'held connection to the writer m1');
$d->ctl('node role db/m2 writer');
my $t0 = time;
$s->blocking(0);
my $closed = 0;
while (time - $t0 < 5) {
    my $n = sysread $s, my $x, 4096;
    if (defined $n && $n == 0) { $closed = 1; last }
    sleep 0.05;
}
ok($closed, 'connection to the old writer closed after the role change');
my @rows = split /\n/, ($d->ctl('show pools'))[1];
like((grep { /^db\s/ } @rows)[0], qr/\sm2$/, 'show pools names the writer');
# A route's own idle timeout: a connection on which nothing moves is
# closed after it, with a log line.
my $idle = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ti") or die;
syswrite $idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
$buf = '';
$t0 = time;
while (time - $t0 < 5) {
    my $n = sysread $idle, $buf, 4096, length $buf;
    last unless $n;
}
my $took = time - $t0;
like($buf, qr/node=b1\n\z/, 'idle route: relayed');
ok($took > 0.3 && $took < 3, 'then closed after its idle_timeout') or diag $took;
ok($d->wait_log(qr/tcp 127\.0\.0\.1:$ti: client 127\.0\.0\.1:\d+: php\/b1: idle for 0\.5 s; closing/),
   'idle close logged');
my (undef, $cfg) = $d->ctl('show config');
like($cfg, qr/idle_timeout = 0\.5;/, 'show config has the route\'s idle_timeout');
is($d->stop, 0, 'stop');
done_testing;
