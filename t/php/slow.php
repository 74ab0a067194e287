<?php
// Sleeps ?t=SECONDS (fractions allowed, at most 60) before answering, for
// queueing, timeout and concurrency tests.
require __DIR__ . '/common.inc';
$t = isset($_GET['t']) ? (float)$_GET['t'] : 1.0;
$t = max(0.0, min($t, 60.0));
usleep((int)($t * 1000000));
header('Content-Type: text/plain');
header('X-SJ-Node: ' . sj_node());
echo "slept=$t node=" . sj_node() . "\n";
