#!/usr/bin/perl
# A scripted origin for cached's tests, for exact headers and faults that
# Apache cannot be made to produce on cue. Forks per connection, serves
# keep-alive, and appends one line per request to LOG ("METHOD TARGET").
#
#   origin.pl PORT LOG
#
# The path chooses the behaviour; query parameters:
#   cc=VALUE       Cache-Control
#   sleep=MS       wait before answering
#   status=N       status code (default 200)
#   size=N         body of N bytes (default: a short text)
#   pattern=1      with size: numbered 16-byte lines, not all 'x', so that
#                  a piece out of place shows
#   chunked=1      Transfer-Encoding: chunked
#   truncate=N     announce the body but close after N bytes
#   trickle=MS     send the body in ten pieces, MS ms apart (with
#                  truncate: close once N bytes have gone)
#   etag=V         ETag "V"; If-None-Match "V" gets 304
#   close=1        Connection: close, no Content-Length (read until close)
#   garbage=1      a malformed response (two Content-Length fields)
#   body=TEXT      the body
#   vary=NAME      Vary: NAME, and the body "variant=VALUE" of that field
#   readsleep=MS   a slow reader: wait this long after each read of a
#                  request body
# A request body (Content-Length or chunked) is read as it comes, not held:
# the log line then ends in " blen=LENGTH bmd5=MD5" of what arrived.
# While the file LOG.fail exists, every request is answered with the status
# it holds and no caching headers (the test's "origin is failing" switch).
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use POSIX ();
use Digest::MD5;

my ($port, $log) = @ARGV;
my $srv = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port", Listen => 128,
                                ReuseAddr => 1) or die "listen: $!\n";
$SIG{CHLD} = 'IGNORE';
my $n = 0;
while (1) {
    my $c = $srv->accept or next;
    my $pid = fork;
    if (!defined $pid) { close $c; next }
    if ($pid) { close $c; next }
    close $srv;
    serve($c);
    POSIX::_exit(0);
}

sub serve {
    my ($c) = @_;
    binmode $c;
    my $buf = '';
    while (1) {
        while ($buf !~ /\r\n\r\n/) {
            my $r = sysread $c, $buf, 65536, length $buf;
            return unless $r;
        }
        $buf =~ s/^(.*?)\r\n\r\n//s;
        my $head = $1;
        my ($method, $target) = $head =~ /^(\S+) (\S+)/;
        my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1, $2) : () }
                split /\r\n/, $head;
        my %q = $target =~ /[?&]([^=&]+)=([^&]*)/g;
        s/%([0-9A-Fa-f]{2})/chr hex $1/ge for values %q;
        my $md5 = Digest::MD5->new;
        my $blen;
        # More bytes into $buf, slowly if asked to.
        my $more = sub {
            sleep($q{readsleep} / 1000) if $q{readsleep};
            return sysread $c, $buf, 65536, length $buf;
        };
        if (my $cl = $h{'content-length'}) {
            $blen = 0;
            while ($blen < $cl) {
                $more->() or return if $buf eq '';
                my $take = substr($buf, 0, $cl - $blen, '');
                $md5->add($take);
                $blen += length $take;
            }
        } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
            $blen = 0;
            while (1) {
                while ($buf !~ /\r\n/) { $more->() or return }
                $buf =~ s/^([0-9a-fA-F]+)[^\r]*\r\n// or return;
                my $size = hex $1;
                if ($size == 0) {
                    while ($buf !~ /^\r\n/ && $buf !~ /\r\n\r\n/) {
                        $more->() or return;
                    }
                    $buf =~ s/^\r\n// or $buf =~ s/^.*?\r\n\r\n//s;
                    last;
                }
                while (length $buf < $size + 2) { $more->() or return }
                $md5->add(substr($buf, 0, $size, ''));
                substr($buf, 0, 2, '');
                $blen += $size;
            }
        }
        if (open my $lf, '>>', $log) {
            print $lf "$method $target inm=" . ($h{'if-none-match'} // '-')
                . " xfp=" . ($h{'x-forwarded-proto'} // '-')
                . " xff=" . ($h{'x-forwarded-for'} // '-')
                . (defined $blen ? " blen=$blen bmd5=" . $md5->hexdigest : '')
                . "\n";
            close $lf;
        }
        sleep($q{sleep} / 1000) if $q{sleep};
        my $status = $q{status} // 200;
        # The test can make every answer fail: LOG.fail holds the status.
        if (open my $ff, '<', "$log.fail") {
            my $fs = <$ff> // '';
            ($status) = $fs =~ /(\d{3})/;
            $status //= 500;
            delete $q{$_} for qw(cc etag chunked truncate close size);
            $q{body} = "failing\n";
        }
        my $body = $q{body} // "origin body for $target\n";
        $body = 'x' x $q{size} if defined $q{size};
        $body = substr(join('', map { sprintf "%015d\n", $_ }
                                0 .. $q{size} / 16), 0, $q{size})
            if defined $q{size} && $q{pattern};
        $body = 'variant=' . ($h{lc $q{vary}} // '-') . "\n"
            if defined $q{vary};
        my @hdr = ("Date: " . POSIX::strftime("%a, %d %b %Y %H:%M:%S GMT",
                                              gmtime));
        push @hdr, "Cache-Control: $q{cc}" if defined $q{cc};
        push @hdr, "Vary: $q{vary}" if defined $q{vary};
        push @hdr, "X-Origin-Pid: $$";
        if (defined $q{etag}) {
            push @hdr, qq{ETag: "$q{etag}"};
            if (($h{'if-none-match'} // '') eq qq{"$q{etag}"}) {
                print $c join("\r\n", "HTTP/1.1 304 Not Modified", @hdr, '', '');
                next;
            }
        }
        my $reason = $status == 200 ? 'OK' : 'Status';
        if ($q{garbage}) {
            # Two Content-Length fields: a response a proxy must refuse.
            syswrite $c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                . "Content-Length: 6\r\n\r\nhello";
            return;
        }
        if ($q{close}) {
            print $c join("\r\n", "HTTP/1.1 $status $reason", @hdr,
                          'Connection: close', '', '') . $body;
            return;
        }
        if ($q{chunked}) {
            my $out = join("\r\n", "HTTP/1.1 $status $reason", @hdr,
                           'Transfer-Encoding: chunked', '', '');
            for my $piece ($body =~ /(.{1,1000})/gs) {
                $out .= sprintf("%x\r\n%s\r\n", length $piece, $piece);
            }
            print $c $out . "0\r\n\r\n";
            next;
        }
        my $out = join("\r\n", "HTTP/1.1 $status $reason", @hdr,
                       'Content-Length: ' . length($body), '', '');
        if ($q{trickle}) {
            syswrite $c, $out;
            my $piece = int((length($body) + 9) / 10);
            my $limit = $q{truncate} // length $body;
            for (my $off = 0; $off < $limit; $off += $piece) {
                sleep($q{trickle} / 1000);
                my $n = $off + $piece > $limit ? $limit - $off : $piece;
                syswrite $c, substr($body, $off, $n) or return;
            }
            if (defined $q{truncate}) {
                sleep 0.2;
                return;
            }
            next;
        }
        if (defined $q{truncate}) {
            syswrite $c, $out . substr($body, 0, $q{truncate});
            sleep 0.2;
            return;
        }
        syswrite $c, $out . $body;
    }
}
