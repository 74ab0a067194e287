#!/usr/bin/perl
# Reload and the listening sockets: new addresses are opened, dropped ones
# closed, kept ones never refuse a connection, and an address that cannot
# be bound makes the reload fail with the old configuration left running.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use IO::Socket::INET;
use SJ::Test;

my $t = SJ::Test->new;
my ($pa, $pb) = ($t->port('a'), $t->port('b'));
my $origin = $t->run_dir . '/balancerd.sock';
sub conf {
    my @ports = @_;
    my $listen = join ', ', map { qq{"127.0.0.1:$_"} } @ports;
    $t->write_conf(cached => qq{listen = ( $listen ); origin = "unix:$origin";
        workers = 1;});
}
sub answers {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 3)
        or return 0;
    print $s "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    # No origin listens at $origin: cached answers 502 by itself.
    return $r =~ /^HTTP\/1\.1 502 / ? 1 : 0;
}

conf($pa);
my $d = $t->start('cached');
ok(answers($pa), 'listening on A');
ok(!answers($pb), 'not on B');

conf($pa, $pb);
my ($st, $body) = $d->ctl('reload');
is($st, 200, 'reload adding B');
ok(answers($pa) && answers($pb), 'A and B both answer');

conf($pb);
($st, $body) = $d->ctl('reload');
is($st, 200, 'reload dropping A');
ok($d->wait_log(qr/no longer listening on 127\.0\.0\.1:$pa/), 'logged');
ok(answers($pb), 'B answers');
# The old generation may still be finishing; give it its moment.
my $closed = 0;
for (1 .. 40) { if (!answers($pa)) { $closed = 1; last } select undef, undef, undef, 0.1 }
ok($closed, 'A refused once the old workers are gone');

# Someone else holds C: the reload fails, B keeps working.
my $pc = $t->port('c');
my $squatter = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$pc",
                                     Listen => 1, ReuseAddr => 1) or die $!;
conf($pb, $pc);
($st, $body) = $d->ctl('reload');
is($st, 500, 'reload with an address in use: 500');
like($body, qr/listen 127\.0\.0\.1:$pc: .*in use/i, 'names the address');
ok(answers($pb), 'B still answers');
is(SJ::Daemon::kv(($d->ctl('status'))[1])->{generation}, 3, 'still generation 3');
is($d->stop, 0, 'clean stop');
done_testing;
