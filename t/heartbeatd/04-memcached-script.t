#!/usr/bin/perl
# memcached checks against a real memcached (killed: down; restarted: up),
# script checks (exit status, reason, killed at timeout) and notify scripts
# (environment, one at a time per node, a hanging one killed).
use strict;
use warnings;
use lib (($ENV{SJ_SRCDIR} // '.') . '/t/lib');
use Test::More;
use Time::HiRes qw(sleep time);
use SJ::Test;
use SJ::Memcached;

my $why = SJ::Memcached->skip_reason;
plan skip_all => $why if $why;

my $t = SJ::Test->new;
my $dir = $t->dir;
my $mc = SJ::Memcached->start(dir => $dir);
my $mc_addr = '127.0.0.1:' . $mc->port;

# A script check whose verdict the test flips with a file.
$t->write_file('verdict', "0\n");
$t->write_file('check.sh', <<"EOS");
echo "checked \$SJ_NODE at \$SJ_HOST port \$SJ_PORT"
exit \$(cat $dir/verdict)
EOS
# The notify script: records its environment; the "hang" node's first
# run hangs until killed.
$t->write_file('notify.sh', <<"EOS");
echo "start \$SJ_POOL/\$SJ_NODE \$SJ_OLD_STATE \$SJ_NEW_STATE [\$SJ_REASON] \$SJ_ADDRESS" >> $dir/notify.log
if [ "\$SJ_NODE" = hang ] && [ ! -e $dir/hung ]; then touch $dir/hung; sleep 30; fi
sleep 0.2
echo "end \$SJ_POOL/\$SJ_NODE \$SJ_NEW_STATE" >> $dir/notify.log
EOS
$t->write_conf(
    pools => qq{
        mc: { check = { type = "memcached"; interval = 0.2; timeout = 0.5;
                        rise = 2; fall = 2; key = "sj:test:canary"; };
              nodes = ( { name = "mc1"; address = "$mc_addr"; } ); };
        scr: { check = { type = "script"; script = "sh $dir/check.sh";
                         interval = 0.2; timeout = 1.0; rise = 1; fall = 1; };
               nodes = ( { name = "s1"; address = "127.0.0.1:7"; } ); };
        slow: { check = { type = "script"; script = "sleep 30";
                          interval = 0.3; timeout = 0.3; rise = 1; fall = 1;
                          notify_script = ""; };
                nodes = ( { name = "hang"; address = "127.0.0.1:9"; } ); };
    },
    heartbeatd => qq{notify_script = "sh $dir/notify.sh";
                     notify_timeout = 1.0;},
);
my $hb = $t->start('heartbeatd');

sub state_of {
    my ($node) = @_;
    my ($st, $body) = $hb->ctl('show nodes');
    return $body =~ m{^\Q$node\E \S+ (\S+) (.*)$}m ? ($1, $2) : ('', '');
}
sub wait_state {
    my ($node, $state, $timeout) = @_;
    my $end = time + ($timeout // 5);
    while (time < $end) {
        return 1 if (state_of($node))[0] eq $state;
        sleep 0.02;
    }
    return 0;
}
sub notify_lines {
    open my $fh, '<', "$dir/notify.log" or return ();
    return map { chomp; $_ } <$fh>;
}

# ---- memcached
ok(wait_state('mc/mc1', 'up'), 'memcached up');
like((state_of('mc/mc1'))[1], qr/version \d/, 'reason: its version');
is($mc->get('sj:test:canary') =~ /^\d+\.\d+$/ ? 1 : 0, 1,
   'the canary key was written');
my $t0 = time;
$mc->kill;
ok(wait_state('mc/mc1', 'down', 5), 'killed memcached: down');
diag(sprintf 'memcached down %.2f s after the kill', time - $t0);
$mc->start;
ok(wait_state('mc/mc1', 'up', 5), 'restarted memcached: up');

# ---- script checks
ok(wait_state('scr/s1', 'up'), 'script exit 0: up');
like((state_of('scr/s1'))[1], qr/checked s1 at 127\.0\.0\.1 port 7/,
     'its first output line is the reason; node in the environment');
$t->write_file('verdict', "3\n");
ok(wait_state('scr/s1', 'down'), 'script exit 3: down');
like((state_of('scr/s1'))[1], qr/exit 3: checked s1/, 'reason has the status');
$t->write_file('verdict', "0\n");
ok(wait_state('scr/s1', 'up'), 'and up again');

ok(wait_state('slow/hang', 'down', 3), 'a hanging script check: down');
like((state_of('slow/hang'))[1], qr/timeout after 0\.3 s/, 'on its timeout');
sleep 1;
my @sleepers = grep { my $c = do { local (@ARGV, $/) = "/proc/$_/cmdline"; <> // '' };
                      $c eq "sleep\x{0}30\x{0}" } map { m{/proc/(\d+)} } glob '/proc/[0-9]*';
cmp_ok(scalar @sleepers, '<=', 1,
       'killed check scripts do not pile up (' . scalar(@sleepers) . ' left)');

# ---- notify scripts
my $end = time + 5;
sleep 0.1 while !grep({ /^end slow\/hang/ } notify_lines()) && time < $end;
my @n = notify_lines();
ok(grep({ m{^start mc/mc1 unknown up \[version \S+\] \Q$mc_addr\E$} } @n),
   'notify: environment of the first change') or diag join "\n", @n;
ok(grep({ m{^start mc/mc1 up down \[after 2 failed checks: connect: connection refused\]} } @n),
   'notify: the down with its reason');
my @mc = grep { m{ mc/mc1 } } @n;
is_deeply([map { /^(start|end)/ ? $1 : $_ } @mc],
          [qw(start end start end start end)],
          'one script at a time per node, in order') or diag join "\n", @mc;
ok($hb->log =~ m{slow/hang: notify script still running after 1 s; killing it},
   'the hanging notify script is killed at notify_timeout');
ok(grep({ m{^start slow/hang} } @n) >= 1, 'the hanging node was notified');

is($hb->stop, 0, 'clean stop');
$mc->stop;
done_testing;
