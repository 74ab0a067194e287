package SJ::Unit;
# Runs a C++ unit test program (which prints TAP) from the build tree and
# hands its results to the .t file, which asserts on them:
#
#   my $u = unit_run('buffer_test');
#   is($u->{status}, 0, 'buffer_test exits 0');
#   cmp_ok($u->{count}, '>=', 108, 'and makes its 108 checks');
#   unit_report($u);       # each of the program's checks, as ok() or skip
#   done_testing;
#
# A program that is not built, dies, or prints fewer checks than it planned
# fails; nothing that did not run counts as passed.
use strict;
use warnings;
use Exporter 'import';
use Test::More;
our @EXPORT_OK = qw(unit_run unit_report);

# unit_run(NAME): { status => exit status (-1: not built or not started),
# count => checks printed, planned => the "1..N" count (undef if none),
# skipped => checks skipped, results => [{ ok, name, skip }], notes =>
# [the program's "#" lines] }.
sub unit_run {
    my ($name) = @_;
    my $bin = ($ENV{SJ_BUILDDIR} // '.') . "/t/unit/$name";
    my %u = (status => -1, count => 0, skipped => 0, results => [],
             notes => [], planned => undef);
    if (!-x $bin) {
        push @{ $u{notes} }, "$bin is not built (run `make check`)";
        return \%u;
    }
    open my $fh, '-|', $bin or do {
        push @{ $u{notes} }, "cannot run $bin: $!";
        return \%u;
    };
    while (my $line = <$fh>) {
        chomp $line;
        if ($line =~ /^(not )?ok \d+(?: - (.*?))?(?: # SKIP (.*))?$/) {
            push @{ $u{results} },
                { ok => !$1, name => $2 // '', skip => $3 };
            $u{count}++;
            $u{skipped}++ if defined $3;
        } elsif ($line =~ /^1\.\.(\d+)/) {
            $u{planned} = $1;
        } elsif ($line =~ /^#\s?(.*)/) {
            push @{ $u{notes} }, $1;
        }
    }
    close $fh;
    $u{status} = $? & 127 ? -1 : $? >> 8;
    return \%u;
}

# unit_report($u): the program's checks as this test's, then its plan kept.
sub unit_report {
    my ($u) = @_;
    for my $r (@{ $u->{results} }) {
        SKIP: {
            skip $r->{skip}, 1 if defined $r->{skip};
            ok($r->{ok}, $r->{name});
        }
    }
    is($u->{planned}, $u->{count}, 'the program printed every check it planned');
    my $failed = grep { !$_->{ok} } @{ $u->{results} };
    my $say = $failed || $u->{status} != 0 ? \&diag : \&note;
    $say->($_) for @{ $u->{notes} };
}

1;
