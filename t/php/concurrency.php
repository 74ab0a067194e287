<?php
// Counts the requests in progress on this node and records the highest count
// seen, so a test can check a balancer's per-node connection limit.
//   concurrency.php?t=SECONDS   enter, sleep, leave (the default is 1 s)
//   concurrency.php?read=1      print "cur=N max=M" without counting
//   concurrency.php?reset=1     set both to 0
// The counters live in one file under flock, because prefork Apache serves
// concurrent requests from separate processes.
require __DIR__ . '/common.inc';

function sj_update(callable $change): array
{
    $file = sj_state_dir() . '/concurrency';
    $fh = fopen($file, 'c+');
    if ($fh === false) {
        http_response_code(500);
        exit("cannot open $file\n");
    }
    flock($fh, LOCK_EX);
    $data = stream_get_contents($fh);
    $cur = 0;
    $max = 0;
    if (preg_match('/^(\d+) (\d+)/', $data, $m)) {
        $cur = (int)$m[1];
        $max = (int)$m[2];
    }
    [$cur, $max] = $change($cur, $max);
    ftruncate($fh, 0);
    rewind($fh);
    fwrite($fh, "$cur $max\n");
    fflush($fh);
    flock($fh, LOCK_UN);
    fclose($fh);
    return [$cur, $max];
}

header('Content-Type: text/plain');
header('Cache-Control: no-store');
header('X-SJ-Node: ' . sj_node());

if (isset($_GET['reset'])) {
    sj_update(fn($c, $m) => [0, 0]);
    echo "cur=0 max=0\n";
    exit;
}
if (isset($_GET['read'])) {
    [$cur, $max] = sj_update(fn($c, $m) => [$c, $m]);
    echo "cur=$cur max=$max\n";
    exit;
}

$t = isset($_GET['t']) ? (float)$_GET['t'] : 1.0;
$t = max(0.0, min($t, 60.0));
// Leave even when the client goes away mid-sleep, or the count would drift.
ignore_user_abort(true);
[$cur, $max] = sj_update(fn($c, $m) => [$c + 1, max($m, $c + 1)]);
register_shutdown_function(function () {
    sj_update(fn($c, $m) => [max(0, $c - 1), $m]);
});
usleep((int)($t * 1000000));
echo "entered_with=$cur node=" . sj_node() . "\n";
