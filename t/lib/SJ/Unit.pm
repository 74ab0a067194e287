package SJ::Unit;
# Runs a C++ unit test binary (which prints TAP itself) from the build tree,
# so `prove t/unit/foo.t` and automake's TAP driver both work.
use strict;
use warnings;
use Exporter 'import';
our @EXPORT = qw(run_unit);

sub run_unit {
    my ($name) = @_;
    my $dir = $ENV{SJ_BUILDDIR} // '.';
    my $bin = "$dir/t/unit/$name";
    if (!-x $bin) {
        # Not built is a failure, not a skip: a test that did not run must
        # never count as passed.
        print "1..1\nnot ok 1 - $bin is not built (run `make check`)\n";
        exit 1;
    }
    exec $bin or die "exec $bin: $!";
}

1;
