#!/usr/bin/perl
# cached.accept_policy. "pack" (the default): new connections go to the
# first worker while it has time for them; a stopped first worker costs a
# new client milliseconds, not its connection. "kernel": whichever worker
# the kernel wakes first. Both count each worker's accepted connections and
# how busy it is, in show stats and the metrics.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached server_pid);

# show stats' per-worker rows: { index => { pid, accepted, busy } }.
sub workers {
    my ($d) = @_;
    my (undef, $body) = $d->ctl('show stats');
    my %w;
    for (split /\n/, $body) {
        my @f = split / /;
        next unless @f == 15 && $f[0] eq 'worker' && $f[1] =~ /^\d+$/;
        $w{ $f[1] } = { pid => $f[2], accepted => $f[13], busy => $f[14] };
    }
    return \%w;
}

# A keep-alive connection that has been answered once, or undef.
sub client {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5)
        or return undef;
    print $s "GET /ping?cc=max-age%3D600 HTTP/1.1\r\nHost: test.example\r\n\r\n";
    my $r = http_read($s, timeout => 5);
    return ($r->{status} // 0) == 200 ? $s : undef;
}

my $t = SJ::Test->new;
my $o = SJ::Cached::Origin->start($t);
my $mport = $t->port('metrics');
my (undef, $d, $port) = start_cached(origin => $o->address, test => $t,
    workers => 2, extra => qq{metrics_listen = "127.0.0.1:$mport";});
my @kids = $d->wait_children(2);
is(scalar @kids, 2, 'two workers');
my $w = workers($d);
ok($w->{0} && $w->{1}, 'show stats lists both workers');
my ($first, $second) = ($w->{0}{pid}, $w->{1}{pid});
# Both idle; start_cached's wait for the port was a connection too, which
# a worker takes once its loop runs: count from after that.
sleep 0.3;
$w = workers($d);
my $before = $w->{0}{accepted} + $w->{1}{accepted};
my $second_before = $w->{1}{accepted};

# Twelve clients, one after another: the first worker takes them all
# (one may go to the second when the first is slow to wake on a loaded
# machine).
my @socks;
for (1 .. 12) {
    push @socks, client($port);
    sleep 0.01;
}
is(scalar(grep { defined } @socks), 12, 'twelve clients answered');
my %by = ();
$by{ server_pid($_) }++ for grep { defined } @socks;
cmp_ok($by{$first} // 0, '>=', 11,
       'pack: the first worker holds ' . ($by{$first} // 0) . ' of 12');
$w = workers($d);
my $by_second = $w->{1}{accepted} - $second_before;
cmp_ok($by_second, '<=', 1, "show stats: accepted by the second: $by_second");
is($w->{0}{accepted} + $w->{1}{accepted} - $before, 12,
   'twelve accepted in all');
like($w->{0}{busy}, qr/^\d+$/, "and how busy it is ($w->{0}{busy}%)");

# The first worker stopped: a new client is answered by the second, at
# once.
kill 'STOP', $first;
my $t0 = time;
my $s = client($port);
my $took = time - $t0;
kill 'CONT', $first;
ok($s, 'first worker stopped: a new client is answered');
is($s ? server_pid($s) : 0, $second, 'by the second worker');
ok($took < 1, sprintf('within %.3f s', $took));

# The metrics.
my $m = http_get(host => '127.0.0.1', port => $mport, path => '/metrics',
                 timeout => 5);
like($m->{body} // '', qr/^cached_accepted_total\{worker="0"\} \d+$/m,
     'metrics: cached_accepted_total per worker');
like($m->{body} // '', qr/^cached_worker_busy_ratio\{worker="1"\} [\d.]+$/m,
     'metrics: cached_worker_busy_ratio per worker');
close $_ for grep { defined } @socks, $s;
is($d->stop, 0, 'clean stop');

# "kernel": every client is still answered and counted.
my $t2 = SJ::Test->new;
my (undef, $d2, $port2) = start_cached(origin => $o->address, test => $t2,
    workers => 2, extra => 'accept_policy = "kernel";');
$d2->wait_children(2);
sleep 0.3;
$w = workers($d2);
$before = ($w->{0}{accepted} // 0) + ($w->{1}{accepted} // 0);
@socks = ();
push @socks, client($port2) for 1 .. 12;
is(scalar(grep { defined } @socks), 12, 'kernel: twelve clients answered');
$w = workers($d2);
is(($w->{0}{accepted} // 0) + ($w->{1}{accepted} // 0) - $before, 12,
   'kernel: twelve accepted in all');
close $_ for grep { defined } @socks;
is($d2->stop, 0, 'kernel: clean stop');

done_testing;
