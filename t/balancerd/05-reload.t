#!/usr/bin/perl
# Reload under load: clients hammer balancerd while it reloads three times
# (the last one with new weights and a new node); not one request fails,
# the new weights apply to new requests, node state carries over, and the
# metrics listener serves the Prometheus text format.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Net qw(http_get);
use SJ::Balancerd qw(ctl_rows);

my $t = SJ::Test->new;
my $port = $t->port('http');
my $mport = $t->port('metrics');
my @b = map { SJ::Balancerd::Backend->start(t => $t, name => "b$_") } 1 .. 3;

sub conf {
    my ($nodes) = @_;
    $t->write_conf(
        pools => qq{php: { nodes = ( $nodes ); };},
        balancerd => qq{listen = ( "127.0.0.1:$port" ); pool = "php"; workers = 2;
            metrics_listen = "127.0.0.1:$mport";},
    );
}
sub node { qq{{ name = "b$_[0]"; address = "${\ $b[$_[0]-1]->address}"; weight = $_[1]; }} }

conf(join ', ', node(1, 10), node(2, 10));
my $d = $t->start('balancerd');
$d->ctl('node drain php/b2');

# Load: four clients, fresh connection per request, for about 4 seconds.
my $out = $t->dir . '/load';
my @kids;
for my $k (1 .. 4) {
    my $pid = fork // die;
    if ($pid == 0) {
        my ($ok, $bad, @why) = (0, 0);
        my $end = time + 4;
        my $n = 0;
        while (time < $end && $n++ < 20000) {
            my $r = http_get(host => '127.0.0.1', port => $port,
                             path => "/x$k", timeout => 5);
            if ($r->{status} == 200) { $ok++ }
            else { $bad++; push @why, "$r->{status} " . ($r->{error} // '') }
        }
        open my $fh, '>', "$out.$k";
        print $fh "$ok $bad\n", map { "$_\n" } @why[0 .. ($#why < 5 ? $#why : 4)];
        close $fh;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
sleep 0.7;
my ($st) = $d->ctl('reload');
is($st, 200, 'reload 1 under load');
sleep 0.7;
$d->signal('HUP');
sleep 0.7;
conf(join ', ', node(1, 10), node(2, 10), node(3, 10));
($st) = $d->ctl('reload');
is($st, 200, 'reload 3 (a node added) under load');
waitpid $_, 0 for @kids;
my ($ok, $bad) = (0, 0);
for my $k (1 .. 4) {
    open my $fh, '<', "$out.$k" or die;
    my ($o, $f) = split ' ', scalar <$fh>;
    $ok += $o;
    $bad += $f;
    diag <$fh> if $f;
}
ok($ok > 200, "load ran ($ok requests)");
is($bad, 0, 'zero failed requests across three reloads');

my @rows = ctl_rows(($d->ctl('show nodes'))[1]);
my %admin = map { $_->{NODE} => $_->{ADMIN} } @rows;
is($admin{'php/b2'}, 'drain', 'drain carried over across reloads');
is($admin{'php/b3'}, 'enabled', 'new node enabled');
my %c;
for (1 .. 20) {
    my $r = http_get(host => '127.0.0.1', port => $port, path => '/');
    $c{ ($r->{body} =~ /node=(\w+)/)[0] // '?' }++;
}
ok(!$c{b2} && $c{b1} >= 5 && $c{b3} >= 5 && $c{b1} + $c{b3} == 20,
   'new node takes traffic, drained one none: '
   . join(',', map { "$_=$c{$_}" } sort keys %c));

my $m = http_get(host => '127.0.0.1', port => $mport, path => '/metrics');
is($m->{status}, 200, 'metrics endpoint');
like($m->{body}, qr/^# TYPE balancerd_requests_total counter$/m, 'prometheus TYPE line');
like($m->{body}, qr/^balancerd_requests_total\{pool="php",node="b1"\} (\d+)$/m, 'per node counter');
like($m->{body}, qr/^balancerd_response_seconds_bucket\{pool="php",node="b1",le="\+Inf"\} \d+$/m,
     'histogram');
is($d->stop, 0, 'clean stop');
done_testing;
