#!/usr/bin/perl
# The daemons' event loops run on epoll whatever LIBEV_FLAGS says: libev
# reads that variable to choose its backend, and its io_uring backend
# (LIBEV_FLAGS=128) aborts a worker under load. All daemons make their loops
# in common/daemon_main.cc; balancerd stands for them here. Asserted on the
# descriptors the parent and the worker hold: an epoll instance, no
# io_uring one (with balancerd.send_batching off: it makes a ring of its
# own, not libev's).
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Net;
use SJ::Test;
use SJ::Balancerd qw(start_one_node);

# The kinds of anonymous-inode descriptors PID holds ("eventpoll",
# "io_uring", ...), each once.
sub anon_kinds {
    my ($pid) = @_;
    my %kinds;
    for my $fd (glob "/proc/$pid/fd/*") {
        my $to = readlink $fd // next;
        $kinds{$1} = 1 if $to =~ /^anon_inode:\[?([\w-]+)\]?$/;
    }
    return \%kinds;
}

my $t = SJ::Test->new;
my ($d, $port, $node) = do {  # $node must live: its DESTROY stops it
    local $ENV{LIBEV_FLAGS} = 128;  # EVBACKEND_IOURING
    start_one_node($t, 'send_batching = false;');
};
my ($worker) = $d->wait_children(1);
ok($worker, 'a worker');

for my $p ([parent => $d->pid], [worker => $worker]) {
    my ($who, $pid) = @$p;
    my $k = anon_kinds($pid);
    ok($k->{eventpoll}, "the ${who}'s loop is on epoll")
        or diag explain $k;
    ok(!$k->{io_uring}, "the $who holds no io_uring")
        or diag explain $k;
}

my $r = http_get(host => '127.0.0.1', port => $port, path => '/',
                 timeout => 5);
is($r->{status}, 200, 'and the worker serves');
my @now = $d->children;
is_deeply(\@now, [$worker], 'the same one worker: not respawned');

is($d->stop, 0, 'clean stop');
done_testing();
