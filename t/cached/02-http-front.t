#!/usr/bin/perl
# cached's HTTP front end: strict parsing with the right error status and
# a log line, keep-alive and pipelining answered in order (through to a
# scripted origin), and a graceful stop that lets an in-flight request
# finish.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Cached;

my $t = SJ::Test->new;
my $port = $t->port('http');
my $o = SJ::Cached::Origin->start($t);
$t->write_conf(cached => qq{listen = ( "127.0.0.1:$port" );
    origin = "${\ $o->address}"; workers = 2;
    limits = { header_count = 20; };});
my $d = $t->start('cached');

sub conn {
    IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5)
        or die "connect: $!";
}

# Sends $bytes, reads until the server closes or $timeout; returns the text.
sub exchange {
    my ($bytes, $timeout) = @_;
    my $s = conn();
    print $s $bytes;
    my $buf = '';
    my $end = time + ($timeout // 5);
    while (time < $end) {
        my $rin = '';
        vec($rin, fileno $s, 1) = 1;
        select(my $r = $rin, undef, undef, 0.2) or next;
        my $n = sysread $s, $buf, 65536, length $buf;
        last unless $n;
    }
    return $buf;
}

my @statuses = sub { $_[0] =~ /^HTTP\/1\.1 (\d{3}) /mg }->(
    exchange("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
           . "HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
           . "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
is("@statuses", "200 200 200", 'three pipelined requests, three answers');

my $r = exchange("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr/\r\nContent-Length: (\d+)\r\n/, 'answer has Content-Length');
like($r, qr/\r\n\r\norigin body for \/\n\z/, 'and the body from the origin');

$r = exchange("HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
like($r, qr/\r\n\r\n\z/, 'HEAD answer has no body');

my %bad = (
    'CL and TE' => ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                    . "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
    'two Content-Length' => ["POST / HTTP/1.1\r\nHost: x\r\n"
                    . "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400],
    'TE not chunked' => ["POST / HTTP/1.1\r\nHost: x\r\n"
                    . "Transfer-Encoding: gzip\r\n\r\n", 400],
    'missing Host' => ["GET / HTTP/1.1\r\n\r\n", 400],
    'duplicate Host' => ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    'obs-fold' => ["GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400],
    'space before colon' => ["GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400],
    'too many headers' => ["GET / HTTP/1.1\r\nHost: x\r\n"
                    . join('', map { "X-$_: y\r\n" } 1 .. 30) . "\r\n", 431],
    'over-long target' => ["GET /" . ('a' x 9000) . " HTTP/1.1\r\nHost: x\r\n\r\n", 414],
);
for my $case (sort keys %bad) {
    my ($req, $want) = @{ $bad{$case} };
    my $resp = exchange($req);
    like($resp, qr/^HTTP\/1\.1 $want /, "$case: $want");
    like($resp, qr/\r\nConnection: close\r\n/, "$case: connection closed");
}
ok($d->wait_log(qr/client 127\.0\.0\.1:\d+: 400 Bad Request: .*host/i),
   'refusals logged with the client and the reason');

# A smuggling attempt never becomes two requests: the bytes after the
# refused head are not parsed as a second request.
$r = exchange("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\n"
    . "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
my @n = $r =~ /^HTTP\/1\.1 /mg;
is(scalar @n, 1, 'CL+TE smuggling: one answer only');

# ---- graceful stop: an in-flight request finishes
my $s = conn();
print $s "GET /slow?sleep=300 HTTP/1.1\r\nHost: x\r\n";
sleep 0.3;
$d->signal('TERM');
sleep 0.5;
ok(!$d->exited, 'daemon waits for the in-flight request');
my $refused = !IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                     Timeout => 1);
ok($refused, 'no new connections once stopping');
print $s "\r\n";
my $buf = '';
while (sysread $s, $buf, 4096, length $buf) { }
like($buf, qr/^HTTP\/1\.1 200 .*\r\nConnection: close\r\n/s,
     'in-flight request answered, with Connection: close');
is($d->wait_exit(10), 0, 'then the daemon exits 0');
done_testing;
