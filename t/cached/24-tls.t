#!/usr/bin/perl
# HTTPS: a TLS listener with two certificates chosen by SNI, checked with
# curl (verifying against the right certificate) and openssl s_client
# (the certificate served per server name, TLS 1.2 and 1.3, session
# resumption across workers via tickets); X-Forwarded-Proto: https.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use Digest::MD5 qw(md5_hex);
use POSIX ();
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached get stats);

for my $tool (qw(openssl curl)) {
    plan skip_all => "$tool not installed"
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

my $t = SJ::Test->new;
my $dir = $t->dir;
for my $name (qw(a.example b.example)) {
    my ($st, $out, $err) = run_capture('openssl', 'req', '-x509', '-newkey',
        'rsa:2048', '-nodes', '-days', '2', '-subj', "/CN=$name",
        '-addext', "subjectAltName=DNS:$name",
        '-keyout', "$dir/$name.key", '-out', "$dir/$name.crt");
    die "openssl req: $err" if $st;
    chmod 0644, "$dir/$name.key";
}
my $o = SJ::Cached::Origin->start($t);
my $hport = $t->port('http');
my $sport = $t->port('https');
my ($tt, $d, $port) = start_cached(origin => $o->address, test => $t,
    workers => 2, memory => '32M', max_object => '8M',
    listen => qq{"127.0.0.1:$hport", { address = "127.0.0.1:$sport";
        tls = { certificate = "$dir/a.example.crt"; key = "$dir/a.example.key";
                sni = ( { certificate = "$dir/b.example.crt";
                          key = "$dir/b.example.key"; } ); }; }});
wait_for_port('127.0.0.1', $sport, 10);

sub curl {
    my ($name, $path, @extra) = @_;
    my ($st, $out, $err) = run_capture({ timeout => 20 }, 'curl', '-sS', '-i',
        '--cacert', "$dir/$name.crt", '--resolve', "$name:$sport:127.0.0.1",
        @extra, "https://$name:$sport$path");
    return ($st, $out, $err);
}

my ($st, $out, $err) = curl('a.example', '/x?cc=max-age%3D60');
is($st, 0, 'curl to a.example verifies the default certificate') or diag $err;
like($out, qr{^HTTP/1\.1 200}, 'HTTPS: 200');
like($out, qr{origin body for /x}, 'HTTPS: body from the origin');
($st, $out, $err) = curl('a.example', '/x?cc=max-age%3D60');
like($out, qr/Cache-Status: sunjammer; hit/i, 'HTTPS: a hit');
($st, $out, $err) = curl('b.example', '/y?cc=max-age%3D60');
is($st, 0, 'curl to b.example verifies the SNI certificate') or diag $err;
($st, $out, $err) = curl('b.example', '/y', '--cacert', "$dir/a.example.crt");
isnt($st, 0, "b.example with only a.example's certificate trusted fails");
# The hit path over TLS with a body larger than one record.
($st, $out) = curl('a.example', '/big?cc=max-age%3D60&size=100000');
($st, $out) = curl('a.example', '/big?cc=max-age%3D60&size=100000');
my ($body) = $out =~ /\r\n\r\n(.*)\z/s;
is(length($body // ''), 100000, 'large hit over TLS: whole body');
# A large miss over TLS, to a client that reads slowly (it is handed
# over to the store as the fill runs ahead of it) and to one that follows
# the fill: both get the whole body, in order.
{
    my $size = 3_000_000;
    my $path = "/huge?cc=max-age%3D60&size=$size&pattern=1&trickle=30";
    my $want = md5_hex(substr(join('', map { sprintf "%015d\n", $_ }
                                       0 .. $size / 16), 0, $size));
    my @pids;
    for my $i (1, 2) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            sleep 0.1 if $i == 2;
            exec 'curl', '-sS', '-o', "$dir/huge$i", '--cacert',
                "$dir/a.example.crt", '--resolve', "a.example:$sport:127.0.0.1",
                $i == 1 ? ('--limit-rate', '1500K') : (),
                "https://a.example:$sport$path";
        }
        push @pids, $pid;
    }
    my $t0 = time;
    my (%st, %done);
    while (keys %done < 2 && time - $t0 < 30) {
        for my $i (1, 2) {
            next if $done{$i};
            next unless waitpid($pids[$i - 1], POSIX::WNOHANG()) > 0;
            ($st{$i}, $done{$i}) = ($? >> 8, time - $t0);
        }
        sleep 0.02;
    }
    my @st = map { $st{$_} // -1 } 1, 2;
    my @md5 = map {
        open my $f, '<', "$dir/huge$_" or die; binmode $f;
        Digest::MD5->new->addfile($f)->hexdigest
    } 1, 2;
    is("@st @md5", "0 0 $want $want",
       'large miss over TLS: a slow and a following client, whole bodies');
    is(scalar($o->requests(qr/^GET \/huge/)), 1, 'large miss: one fetch');
    ok(($done{2} // 99) < ($done{1} // 0) - 0.5,
       sprintf('large miss: the follower was not held to the slow '
               . "client's pace (%.2f s against %.2f s)",
               $done{2} // -1, $done{1} // -1));
}
# What the origin saw.
($st, $out) = curl('a.example', '/proto?body=p', '-o', '/dev/null');
my @seen = $o->requests(qr/^GET \/proto/);
is(scalar @seen, 1, 'request reached the origin');
like($seen[0] // '', qr/ xfp=https xff=127\.0\.0\.1$/,
     'the origin saw X-Forwarded-Proto: https and X-Forwarded-For');

sub s_client {
    my (@args) = @_;
    return run_capture({ stdin => "GET /x?cc=max-age%3D60 HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
                         timeout => 20 },
        'openssl', 's_client', '-connect', "127.0.0.1:$sport", '-ign_eof',
        @args);
}
($st, $out) = s_client('-servername', 'b.example');
like($out, qr/subject=.*CN\s*=\s*b\.example/, 's_client SNI b.example: its certificate');
($st, $out) = s_client('-servername', 'a.example');
like($out, qr/subject=.*CN\s*=\s*a\.example/, 's_client SNI a.example: its certificate');
($st, $out) = s_client('-servername', 'unknown.example');
like($out, qr/subject=.*CN\s*=\s*a\.example/, 'unknown name: the default certificate');
($st, $out) = s_client('-tls1_2');
like($out, qr/Protocol\s*:\s*TLSv1\.2/, 'TLS 1.2');
like($out, qr/HTTP\/1\.1 200/, 'TLS 1.2: answered');
($st, $out) = s_client('-tls1_3');
like($out, qr/Protocol\s*:\s*TLSv1\.3/, 'TLS 1.3');
($st, $out) = s_client('-tls1_1');
unlike($out, qr/HTTP\/1\.1 200/, 'TLS 1.1 refused');

# Resumption: several reconnects with a saved session; with two workers
# some land on the worker that did not issue the ticket.
($st, $out) = s_client('-tls1_2', '-sess_out', "$dir/sess");
my $reused = 0;
for (1 .. 6) {
    ($st, $out) = s_client('-tls1_2', '-sess_in', "$dir/sess");
    $reused++ if $out =~ /^Reused, /m;
}
is($reused, 6, 'session resumed on every reconnect (tickets shared by workers)');

is($d->stop, 0, 'clean stop');
done_testing;
