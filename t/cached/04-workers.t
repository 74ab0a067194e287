#!/usr/bin/perl
# cached.workers = 0 (the default) starts one worker per CPU the daemon may
# run on: its affinity mask (taskset, a cpuset), not every CPU of the
# machine.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep);
use SJ::Test;
use SJ::Net;
use SJ::Cached;

# The CPUs this test may use, from "Cpus_allowed_list: 0-3,6".
sub allowed_cpus {
    open my $fh, '<', '/proc/self/status' or die "/proc/self/status: $!";
    my ($list) = map { /^Cpus_allowed_list:\s*(\S+)/ ? $1 : () } <$fh>;
    die "no Cpus_allowed_list\n" unless defined $list;
    my @cpus;
    for my $r (split /,/, $list) {
        my ($lo, $hi) = $r =~ /^(\d+)(?:-(\d+))?$/ or die "odd list $list\n";
        push @cpus, $lo .. ($hi // $lo);
    }
    return @cpus;
}

my @cpus = allowed_cpus();
my $t = SJ::Test->new;
my $o = SJ::Cached::Origin->start($t);
my $port = $t->port('http');
$t->write_conf(cached => qq{listen = ( "127.0.0.1:$port" );
    origin = "${\ $o->address}"; workers = 0;});

# start_with(CPUS...): cached under `taskset -c CPUS` (none: as we are);
# returns how many workers it started.
sub start_with {
    my (@on) = @_;
    my $d = $t->start('cached',
        @on ? (wrap => ['taskset', '-c', join(',', @on)]) : ());
    wait_for_port('127.0.0.1', $port, 10) or die "cached did not listen\n";
    my $want = @on ? scalar @on : scalar @cpus;
    my @kids = $d->wait_children($want, 10);
    # No more than that, either: give a surplus worker time to appear.
    sleep 0.3;
    @kids = $d->children;
    my $r = SJ::Cached::get($port, '/');
    ok(defined $r->{status}, 'and it answers');
    $d->stop;
    return scalar @kids;
}

is(start_with(), scalar @cpus,
    'one worker per CPU of this process (' . scalar(@cpus) . ')');
is(start_with($cpus[0]), 1, "one worker when confined to CPU $cpus[0]");
SKIP: {
    skip 'only one CPU here', 2 if @cpus < 2;
    is(start_with(@cpus[0, 1]), 2, "two workers on CPUs $cpus[0],$cpus[1]");
}

done_testing;
