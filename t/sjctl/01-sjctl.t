#!/usr/bin/perl
# sjctl: `status` over every daemon, commands passed through, and clear
# answers when a daemon is not running or refuses.
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use SJ::Test;

my $t = SJ::Test->new;
my $port = $t->port('http');
my $sock = $t->run_dir . '/balancerd.sock';
my $node = $t->port('php1');
$t->write_conf(
    pools     => qq{php: { nodes = ( { name = "php1"; address = "127.0.0.1:$node"; } ); };},
    cached    => qq{listen = ( "127.0.0.1:$port" ); origin = "unix:$sock"; workers = 1;},
    balancerd => qq{listen = ( "unix:$sock" ); pool = "php";},
);
my @sjctl = ($t->binary('sjctl'), '-f', $t->conf_file);

my ($rc, $out) = $t->run(@sjctl, 'status');
is($rc, 1, 'status with nothing running exits 1');
like($out, qr/^cached\s+not running/m, 'cached shown as not running');

($rc, $out) = $t->run(@sjctl, 'cached', 'ping');
is($rc, 2, 'a command to a daemon that is not running exits 2');
like($out, qr/sjctl: cached is not running \(connect \Q${\ $t->run_dir}\E\/cached\.ctl: /,
     'and says why');

my $b = $t->start('balancerd');
my $c = $t->start('cached');

($rc, $out) = $t->run(@sjctl, 'status');
is($rc, 0, 'status exits 0 with daemons running');
my ($cline) = $out =~ /^(cached\s.*)$/m;
my ($bline) = $out =~ /^(balancerd\s.*)$/m;
like($cline, qr/^cached\s+running\s+${\ $c->pid}\s+\d+s\s+1\s+\Q${\ $t->conf_file}\E$/,
     'cached: state, pid, uptime, generation, config');
like($bline, qr/^balancerd\s+running\s+${\ $b->pid}\s/, 'balancerd: running with its pid');
like($out, qr/^heartbeatd\s+not running/m, 'heartbeatd: not running');

($rc, $out) = $t->run(@sjctl, 'cached', 'ping');
is("$rc $out", "0 pong\n", 'command passed through, body on stdout');

($rc, $out) = $t->run(@sjctl, 'balancerd', 'reload');
is($rc, 0, 'reload through sjctl');
like($out, qr/^reloaded: generation 2$/m, 'reply printed');
($rc, $out) = $t->run(@sjctl, 'status');
like($out, qr/^balancerd\s+running\s+\d+\s+\d+s\s+2\s/m, 'status shows generation 2');

($rc, $out) = $t->run(@sjctl, 'cached', 'no', 'such');
is($rc, 1, 'refused command exits 1');
like($out, qr/^sjctl: cached: 404 unknown command/m, 'and prints the status');

($rc, $out) = $t->run(@sjctl, 'nosuchd', 'ping');
is($rc, 64, 'unknown daemon is a usage error');
like($out, qr/unknown daemon 'nosuchd'/, 'named');

($rc, $out) = $t->run(@sjctl, '-s', $t->run_dir, 'cached', 'status');
like($out, qr/^pid: ${\ $c->pid}$/m, '-s selects the run directory');

SKIP: {
    skip 'needs root to act as another user', 2 unless $> == 0;
    my $gid = getgrnam('nogroup');
    # uid 1 in group nogroup can reach the socket but may not change things.
    my $pid = fork // die;
    if (!$pid) {
        $) = "$gid $gid"; $( = $gid; $< = $> = 1;
        open STDERR, '>', '/dev/null';
        exec @sjctl, 'cached', 'stop';
    }
    waitpid $pid, 0;
    is($? >> 8, 1, 'stop by another user: sjctl exits 1');
    is(SJ::Daemon::kv(($c->ctl('status'))[1])->{state}, 'running',
       'and cached keeps running');
}

is($c->stop, 0, 'cached stopped');
is($b->stop, 0, 'balancerd stopped');
done_testing;
