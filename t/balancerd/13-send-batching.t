#!/usr/bin/perl
# balancerd.send_batching: the writes of a loop iteration go out in one
# io_uring submission (on, the default) or with a send() each (off). Both
# ways: pipelined answers in order, a large answer to a client that reads
# late (the socket fills: the rest waits until writable), a large request
# body (the node's socket fills likewise), and Connection: close answered,
# then closed. The rest of the suite runs with batching on.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use SJ::Net;
use SJ::Test;
use SJ::Balancerd;

my $big = 3 * 1024 * 1024;

# The node: /big answers $big bytes; a POST answers the length of its body;
# anything else names its target.
sub handler {
    my ($req) = @_;
    my $body = $req->{target} eq '/big' ? 'z' x $big
             : $req->{method} eq 'POST' ? 'len=' . length($req->{body})
             : "target=$req->{target}\n";
    return "HTTP/1.1 200 OK\r\nContent-Length: " . length($body)
        . "\r\n\r\n$body";
}

# Reads one response from $s: (status, body), or () on EOF or timeout.
sub read_response {
    my ($s, $buf) = @_;
    my $end = time + 20;
    while (time < $end) {
        if ($$buf =~ /\A(HTTP\/1\.1 (\d+)[^\r]*\r\n(.*?)\r\n\r\n)/s) {
            my ($head, $status, $fields) = ($1, $2, $3);
            my ($len) = $fields =~ /^Content-Length:\s*(\d+)/mi;
            $len //= 0;
            if (length($$buf) >= length($head) + $len) {
                my $body = substr($$buf, length $head, $len);
                substr($$buf, 0, length($head) + $len) = '';
                return ($status, $body);
            }
        }
        my $rin = '';
        vec($rin, fileno $s, 1) = 1;
        select(my $r = $rin, undef, undef, 0.2) or next;
        my $n = sysread $s, $$buf, 262144, length $$buf;
        return () unless $n;
    }
    return ();
}

sub connect_to {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5)
        or die "connect: $!";
    return $s;
}

for my $on (1, 0) {
    my $mode = $on ? 'batching on' : 'batching off';
    my $t = SJ::Test->new;
    my $port = $t->port('http');
    my $node = SJ::Balancerd::Backend->start(t => $t, name => 'b1',
                                             handler => \&handler);
    $t->write_conf(
        pools => qq{php: { nodes = ( { name = "b1"; address = "${\ $node->address}"; } ); };},
        balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php";
            workers = 1; send_batching = ${\ ($on ? 'true' : 'false')};},
    );
    my $d = $t->start('balancerd');
    wait_for_port('127.0.0.1', $port, 10);
    my ($worker) = $d->wait_children(1);
    my $rings = grep { (readlink($_) // '') =~ /io_uring/ }
        glob "/proc/$worker/fd/*";
    if ($on) {
        ok($rings == 1 || $d->log =~ /send batching off: io_uring/,
            "$mode: the worker has its ring (or says why not)");
    } else {
        is($rings, 0, "$mode: the worker has no ring");
    }

    # Pipelined: three requests in one write, three answers in order.
    my $s = connect_to($port);
    syswrite $s, join '', map { "GET /p$_ HTTP/1.1\r\nHost: t\r\n\r\n" } 1 .. 3;
    my $buf = '';
    my @got = map { [read_response($s, \$buf)] } 1 .. 3;
    is_deeply([map { $_->[1] } @got],
        ["target=/p1\n", "target=/p2\n", "target=/p3\n"],
        "$mode: pipelined answers in order");

    # A large answer to a client that reads only after a while.
    syswrite $s, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n";
    sleep 0.5;
    my ($st, $body) = read_response($s, \$buf);
    ok(defined $st && $st == 200 && length($body) == $big
        && $body !~ /[^z]/, "$mode: a $big-byte answer read late arrives whole");

    # A large request body, which fills the node's socket on the way.
    my $payload = 'q' x (2 * 1024 * 1024);
    syswrite $s, "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: "
        . length($payload) . "\r\n\r\n";
    my $off = 0;
    while ($off < length $payload) {
        my $n = syswrite $s, $payload, 65536, $off;
        if (!defined $n) {
            sleep 0.01;
            next;
        }
        $off += $n;
    }
    ($st, $body) = read_response($s, \$buf);
    is($body, 'len=' . length($payload), "$mode: the whole body reached the node");

    # Connection: close: answered, then closed by balancerd.
    syswrite $s, "GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    ($st, $body) = read_response($s, \$buf);
    is($body, "target=/last\n", "$mode: the last answer");
    my $rin = '';
    vec($rin, fileno $s, 1) = 1;
    my $eof = select(my $r = $rin, undef, undef, 5)
        && !sysread($s, my $more, 1);
    ok($eof, "$mode: then the connection is closed");
    close $s;

    my @now = $d->children;
    is_deeply(\@now, [$worker], "$mode: the worker is the same one");
    is($d->stop, 0, "$mode: clean stop");
    $node->stop;
}

done_testing();
