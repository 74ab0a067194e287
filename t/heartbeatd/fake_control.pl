#!/usr/bin/perl
# A scripted control socket for the heartbeatd tests: listens on the Unix
# socket $ARGV[0], answers every command line "200 ok" in the control
# protocol's framing (common/control.h), and appends "CONN<TAB>LINE" to the
# file $ARGV[1] for each line received, CONN naming the connection
# ("PID.N", unique across restarts of this script).
# One connection at a time, as heartbeatd keeps one per daemon.
use strict;
use warnings;
use IO::Socket::UNIX;
use IO::Handle;

my ($path, $log) = @ARGV;
unlink $path;
my $srv = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $path,
                                Listen => 5) or die "listen $path: $!";
open my $out, '>>', $log or die "$log: $!";
$out->autoflush(1);
my $conn = 0;
$SIG{TERM} = sub { unlink $path; exit 0 };
while (my $c = $srv->accept) {
    ++$conn;
    $c->autoflush(1);
    while (my $line = <$c>) {
        $line =~ s/\r?\n\z//;
        print $out "$$.$conn\t$line\n";
        my $body = "ok\n";
        printf $c "%03d %-8d\n%s", 200, length $body, $body;
    }
    close $c;
}
