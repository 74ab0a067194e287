#!/usr/bin/perl
# Collapsed forwarding: concurrent misses for one key make one origin
# request, in one worker and across two; an uncacheable answer releases
# the waiters at once and marks the key pass, so later requests do not
# queue behind each other. Scripted origin (t/cached/origin.pl) that sleeps.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Net;
use SJ::Test;
use SJ::Cached qw(start_cached stats);

my $t = SJ::Test->new;
my $o = SJ::Cached::Origin->start($t);

# Sends $n requests for $path at once; returns (elapsed, responses).
sub burst {
    my ($port, $path, $n) = @_;
    my $t0 = time;
    my @socks = map {
        http_send(host => '127.0.0.1', port => $port, path => $path,
                  headers => { Host => 'test.example' })
            or die "send: $@"
    } 1 .. $n;
    my @r = map { http_read($_, timeout => 10) } @socks;
    return (time - $t0, @r);
}

for my $workers (1, 2) {
    my ($tt, $d, $port) = start_cached(origin => $o->address,
        workers => $workers, test => SJ::Test->new,
        extra => 'pass_ttl = 5.0; collapse_wait = 5.0;');
    my $path = "/c$workers?sleep=1000&cc=max-age%3D60";
    my ($el, @r) = burst($port, $path, 10);
    is(scalar(grep { $_->{status} == 200 } @r), 10,
       "$workers worker(s): ten concurrent misses all answered");
    is(scalar(grep { $_->{body} eq "origin body for $path\n" } @r), 10,
       "$workers worker(s): all with the body");
    is(scalar($o->requests(qr/^GET \/c$workers\?/)), 1,
       "$workers worker(s): one origin request for ten clients");
    ok($el < 3, sprintf("$workers worker(s): in %.2fs", $el));
    ok(scalar(grep { ($_->{headers}{'cache-status'} // '') =~ /collapsed/ } @r) >= 1,
       "$workers worker(s): waiters say collapsed in Cache-Status");

    # Misses that reach both workers in the same instant: only one of
    # them may claim the fetch, round after round.
    my @extra;
    for my $round (1 .. 8) {
        my $p = "/r$workers-$round?sleep=200&cc=max-age%3D60";
        my (undef, @rr) = burst($port, $p, 12);
        my $ok = grep { $_->{status} == 200 } @rr;
        my $n = $o->requests(qr/^GET \/r$workers-$round\?/);
        push @extra, "round $round: $n origin requests, $ok answered"
            if $n != 1 || $ok != 12;
    }
    is_deeply(\@extra, [], "$workers worker(s): eight more bursts, "
              . "one origin request each");

    # Uncacheable: the waiters are released when the answer shows it, and
    # then the key passes: five concurrent requests take one origin time.
    my $u = "/u$workers?sleep=1000";
    ($el, @r) = burst($port, $u, 5);
    is(scalar(grep { $_->{status} == 200 } @r), 5,
       "$workers worker(s): uncacheable: all answered");
    ok($el < 3.5, sprintf("$workers worker(s): uncacheable first burst "
                          . "not serialised (%.2fs)", $el));
    ($el, @r) = burst($port, $u, 5);
    ok($el < 1.9, sprintf("$workers worker(s): pass: five in parallel "
                          . "(%.2fs)", $el));
    is(scalar($o->requests(qr/^GET \/u$workers\?/)), 10,
       "$workers worker(s): every uncacheable request reached the origin");
    my $st = stats($d);
    ok($st->{collapsed} >= 9, "collapsed counted ($st->{collapsed})");
    is($d->stop, 0, "$workers worker(s): clean stop");
}

# A fetch that fails: those waiting for it, in its worker and in the
# other, get its answer at once instead of trying the origin one by one
# (each would wait origin_timeout in turn). A request that comes after
# the failure tries the origin again.
{
    my ($tt, $d, $port) = start_cached(origin => $o->address,
        workers => 2, test => SJ::Test->new,
        extra => 'origin_timeout = 0.6; collapse_wait = 10.0;');
    my $path = '/f?sleep=3000&cc=max-age%3D60';
    my ($el, @r) = burst($port, $path, 10);
    is(join(' ', map { $_->{status} } @r), join(' ', (504) x 10),
       'failed fetch: all ten waiters answered 504');
    ok($el < 2.5, sprintf('failed fetch: at once, not in turn (%.2fs)', $el));
    is(scalar($o->requests(qr/^GET \/f\?/)), 1,
       'failed fetch: one origin request for ten clients');
    my $r = http_get(host => '127.0.0.1', port => $port,
                     path => '/f?sleep=0&cc=max-age%3D60',
                     headers => { Host => 'test.example' });
    is($r->{status}, 200, 'after the failure a new request is fetched');
    is($d->stop, 0, 'failed fetch: clean stop');
}

done_testing;
