#!/usr/bin/perl
# Every man page is built with its paths substituted and is mandoc -Tlint
# clean at warning level (cross-references to pages not installed yet are
# only STYLE notes and are not counted).
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Test qw(builddir);

my $mandoc = (grep { -x } map { "$_/mandoc" } split /:/, $ENV{PATH})[0];
plan skip_all => 'mandoc is not installed (Debian package: mandoc)'
    unless $mandoc;

my @pages = qw(cached.8 balancerd.8 heartbeatd.8 sjctl.8 sunjammer.conf.5
               sunjammer.7);
for my $p (@pages) {
    my $path = builddir() . "/man/$p";
    ok(-f $path, "$p built") or next;
    my $text = do { local (@ARGV, $/) = ($path); <> };
    unlike($text, qr/@[a-z]+@/, "$p: every \@path\@ substituted");
    my $out = `$mandoc -Tlint -Wwarning '$path' 2>&1`;
    is($? >> 8, 0, "$p: mandoc -Tlint exit status");
    is($out, '', "$p: no warnings");
}
done_testing;
