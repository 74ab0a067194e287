#!/usr/bin/perl
# The sample etc/sunjammer.conf is valid for each daemon (-n).
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Test qw(srcdir);

my $t = SJ::Test->new;
# The file make install puts in $(sysconfdir)/sunjammer.
my $sample = srcdir() . '/etc/sunjammer.conf';
ok(-f $sample, "sample configuration present ($sample)");
for my $d (qw(cached balancerd heartbeatd)) {
    my ($rc, $out) = $t->check_conf($d, $sample);
    is($rc, 0, "$d -n accepts the sample") or diag $out;
    like($out, qr/is valid/, "$d says so");
}
done_testing;
