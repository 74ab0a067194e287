package SJ::ConnLimit;
# The max_connections checks shared by cached's and balancerd's tests: a
# worker holding `limit` keep-alive connections stops accepting (the next
# client connects, into the listen backlog, and waits unanswered) without
# spinning on the readable listening socket, logs it, and takes the
# waiting client as soon as one of its connections closes.
#
#   check_max_connections(d => $daemon, port => $port, limit => 3,
#       setting => 'cached.max_connections', worker => $pid,
#       reached => sub { number of requests for a path that reached the
#                        origin or node });
use strict;
use warnings;
use Exporter 'import';
use IO::Select;
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Net;

our @EXPORT_OK = qw(check_max_connections);

# One keep-alive request on a new connection; returns the open socket
# once answered (so the worker surely holds it), or undef.
sub _held {
    my ($port, $path) = @_;
    my $s = http_send(host => '127.0.0.1', port => $port, raw =>
        "GET $path HTTP/1.1\r\nHost: test.example\r\n\r\n") or return;
    my $r = http_read($s, timeout => 5);
    return $r->{status} == 200 ? $s : undef;
}

sub _waiting {
    my ($port, $path) = @_;
    return http_send(host => '127.0.0.1', port => $port, raw =>
        "GET $path HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n");
}

# CPU time (user + system) of a process, in seconds.
sub _cpu {
    open my $fh, '<', "/proc/$_[0]/stat" or return 0;
    my ($rest) = <$fh> =~ /\) (.*)/s;
    my @f = split ' ', $rest;
    return ($f[11] + $f[12]) / 100;    # utime, stime in clock ticks
}

sub check_max_connections {
    my (%o) = @_;
    my ($d, $port, $limit) = @o{qw(d port limit)};
    my @held = map { _held($port, "/held$_") } 1 .. $limit;
    is(scalar(grep { defined } @held), $limit,
       "$limit keep-alive connections held");

    my $s = _waiting($port, '/waiting');
    ok($s, 'one more client connects');
    my $c0 = _cpu($o{worker});
    ok(!IO::Select->new($s)->can_read(1.0),
       'but gets no answer while the worker is at max_connections');
    my $spent = _cpu($o{worker}) - $c0;
    # A worker that kept watching the readable listening socket would
    # burn the whole second.
    ok($spent < 0.3, sprintf('the waiting worker does not spin (%.2f s of '
                             . 'CPU in 1 s)', $spent));
    ok($d->wait_log(qr/$limit connections \(\Q$o{setting}\E\)/),
       'the pause is logged');
    is($o{reached}->('/waiting'), 0, 'nothing was forwarded for it');

    close shift @held;
    my $t0 = time;
    my $r = http_read($s, timeout => 5);
    is($r->{status}, 200, 'answered once a connection closed');
    ok(time - $t0 < 2, 'promptly');
    close $s;
    ok($d->wait_log(qr/accepting again/), 'the resume is logged');

    # The limit keeps holding: the freed place is used, the next waits.
    push @held, _held($port, '/more');
    ok(defined $held[-1], 'the freed place is used again');
    my $s2 = _waiting($port, '/late');
    ok(!IO::Select->new($s2)->can_read(1.0), 'at the limit again: no answer');
    close $_ for grep { defined } @held;
    $r = http_read($s2, timeout => 5);
    is($r->{status}, 200, 'answered after the others closed');
    close $s2;
}

1;
