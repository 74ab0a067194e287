#!/usr/bin/perl
# Request bodies are streamed to the origin as they arrive, not read whole
# first: a 20 MB POST reaches a slow scripted origin byte for byte while
# the worker's resident memory stays far below the body's size (the
# client is not read while the origin has not taken what came before); a
# chunked POST arrives intact and a pipelined request after it is
# answered; max_body still limits a chunked body (413) and a client
# closing inside its body aborts the origin request. Response bodies
# stream too: a slow origin's body reaches the client as it arrives, for
# a storable and an uncacheable response, however large.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use Digest::MD5 qw(md5_hex);
use POSIX ();
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached get);

my $o = SJ::Cached::Origin->start(SJ::Test->new);
my ($t, $d, $port) = start_cached(origin => $o->address,
    extra => 'max_body = "24M";');
my ($worker) = $d->wait_children(1);
ok($worker, 'one worker');

sub vm_rss_kb {
    open my $f, '<', "/proc/$_[0]/status" or return 0;
    while (<$f>) { return $1 if /^VmRSS:\s+(\d+) kB/ }
    return 0;
}

# Block $i of a body: 64 KiB that differ from block to block.
sub block { my ($i) = @_; pack('N', $i) x 16384 }

sub origin_line {
    my ($re) = @_;
    my $end = time + 10;
    while (time < $end) {
        my ($l) = $o->requests($re);
        return $l if defined $l;
        sleep 0.05;
    }
    return '';
}

# Sends $body_sub's pieces on $s from a child process (writes block while
# cached is not reading: that is the backpressure under test); the parent
# samples the worker's RSS until the child is done. Returns the peak (kB).
sub send_body {
    my ($s, $pieces) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        local $SIG{PIPE} = 'IGNORE';
        for my $p (@$pieces) {
            my $off = 0;
            while ($off < length $p) {
                my $n = syswrite $s, $p, length($p) - $off, $off;
                POSIX::_exit(1) unless $n;
                $off += $n;
            }
        }
        POSIX::_exit(0);
    }
    my $peak = 0;
    my $end = time + 40;
    while (time < $end) {
        my $rss = vm_rss_kb($worker);
        $peak = $rss if $rss > $peak;
        last if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.02;
    }
    if (kill 0, $pid) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
    return $peak;
}

# ---- 20 MB with Content-Length to an origin reading 64 KiB every 3 ms.
{
    my $n = 320;
    my $md5 = Digest::MD5->new;
    my @pieces;
    $md5->add(block($_)), push @pieces, block($_) for 0 .. $n - 1;
    my $len = $n * 65536;
    get($port, '/warm');
    my $base = vm_rss_kb($worker);
    my $s = http_send(host => '127.0.0.1', port => $port, raw =>
        "POST /up?readsleep=3 HTTP/1.1\r\nHost: test.example\r\n"
        . "Content-Length: $len\r\nConnection: close\r\n\r\n");
    ok($s, 'connected');
    my $t0 = time;
    my $peak = send_body($s, \@pieces);
    my $r = http_read($s, timeout => 20);
    close $s;
    is($r->{status}, 200, '20 MB POST: 200');
    my $line = origin_line(qr/^POST \/up\?/);
    like($line, qr/ blen=$len bmd5=${\ $md5->hexdigest}$/,
         'the origin got all 20 MB, byte for byte');
    my $grew = $peak - $base;
    diag(sprintf 'worker VmRSS %d kB before, %d kB peak, %.1f s', $base,
         $peak, time - $t0);
    ok($peak > 0 && $grew < 6 * 1024,
       "worker RSS grew by $grew kB (< 6 MB) during the 20 MB upload");
    SKIP: {
        skip 'absolute RSS means nothing under a sanitizer (its shadow '
             . 'memory)', 1 if $ENV{SJ_SANITIZED};
        ok($peak < 20 * 1024,
           "worker RSS peak $peak kB stays well below 20 MB");
    }
}

# ---- Chunked, with a pipelined GET behind it on the same connection.
{
    my @sizes = (1, 10, 4096, 65536, 100000, 3, 250000, 7);
    my ($body, $wire) = ('', '');
    for my $i (0 .. $#sizes) {
        my $p = substr(block($i) x 4, 0, $sizes[$i]);
        $body .= $p;
        $wire .= sprintf("%x\r\n", length $p) . $p . "\r\n";
    }
    $wire .= "0\r\n\r\n";
    my $len = length $body;
    my $s = http_send(host => '127.0.0.1', port => $port, raw =>
        "POST /chunked-up HTTP/1.1\r\nHost: test.example\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n");
    send_body($s, [substr($wire, 0, 70000), substr($wire, 70000),
                   "GET /after HTTP/1.1\r\nHost: test.example\r\n"
                   . "Connection: close\r\n\r\n"]);
    my $all = '';
    my $end = time + 10;
    while (time < $end) {
        my $n = sysread $s, $all, 65536, length $all;
        last unless $n;
    }
    close $s;
    my @st = $all =~ /^HTTP\/1\.1 (\d{3}) /mg;
    is("@st", "200 200", 'chunked POST and the pipelined GET: 200 200');
    like(origin_line(qr/^POST \/chunked-up /),
         qr/ blen=$len bmd5=${\ md5_hex($body)}$/,
         'the chunked body arrived intact');
    like($all, qr/\r\n\r\norigin body for \/after\n\z/,
         'the GET got its own answer');
}

# ---- max_body still applies to a body streamed chunked (24 MB here).
{
    my $s = http_send(host => '127.0.0.1', port => $port, raw =>
        "POST /toolarge HTTP/1.1\r\nHost: test.example\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n");
    my $chunk = sprintf("%x\r\n", 1 << 20) . ('z' x (1 << 20)) . "\r\n";
    send_body($s, [($chunk) x 25]);
    my $r = http_read($s, timeout => 10);
    close $s;
    is($r->{status}, 413, 'chunked body over max_body: 413');
    my @seen = $o->requests(qr/^POST \/toolarge /);
    is(scalar(grep { / blen=/ } @seen), 0,
       'the origin never saw a complete body');
    ok($d->wait_log(qr/413/), 'logged');
}

# ---- A client that leaves inside its body: the origin request is dropped.
{
    my $s = http_send(host => '127.0.0.1', port => $port, raw =>
        "POST /gone HTTP/1.1\r\nHost: test.example\r\n"
        . "Content-Length: 1000000\r\n\r\n" . ('a' x 300000));
    sleep 0.3;
    close $s;
    sleep 0.3;
    is(scalar($o->requests(qr/^POST \/gone /)), 0,
       'a truncated body never completes a request at the origin');
    my $r = get($port, '/still-up');
    is($r->{status}, 200, 'cached still serves');
}

# ---- A slow origin's response: each piece goes on as it arrives. The
# origin sends the body in ten pieces 150 ms apart.
for my $case (['storable', 200000, '&cc=max-age%3D60'],
              ['uncacheable', 200000, ''],
              ['uncacheable, over the pause mark', 600000, '']) {
    my ($name, $size, $extra) = @$case;
    my $t0 = time;
    my $s = http_send(host => '127.0.0.1', port => $port,
                      path => "/slow-$size?size=$size&trickle=150$extra",
                      headers => { Host => 'test.example' });
    my ($buf, $first, $he) = ('', undef, -1);
    while (time - $t0 < 10) {
        my $n = sysread $s, $buf, 65536, length $buf;
        last unless $n;
        $he = index $buf, "\r\n\r\n" if $he < 0;
        $first //= time - $t0 if $he >= 0 && length($buf) > $he + 4;
    }
    my $all = time - $t0;
    is($he >= 0 ? length($buf) - $he - 4 : -1, $size,
       "$name: the whole body (in ${\ sprintf '%.2f', $all} s)");
    ok(defined $first && $first < 0.9,
       sprintf("$name: its first bytes as they came (at %.2f s)",
               $first // -1));
}

done_testing();
