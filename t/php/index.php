<?php
// Names the node that served the request, so a test can tell which backend a
// balancer picked. The header says the same for tests that only read headers.
require __DIR__ . '/common.inc';
$node = sj_node();
header('Content-Type: text/plain');
header('X-SJ-Node: ' . $node);
echo "node=$node\n";
echo "php=" . PHP_VERSION . "\n";
echo "pid=" . getmypid() . "\n";
echo "uri=" . ($_SERVER['REQUEST_URI'] ?? '') . "\n";
