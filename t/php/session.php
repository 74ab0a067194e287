<?php
// Starts (or resumes) a PHP session and counts the requests in it, so a test
// can see whether a client sticks to one node: a session resumed on another
// node starts again from 1, because each node keeps its own session files.
require __DIR__ . '/common.inc';
session_start();
$_SESSION['count'] = ($_SESSION['count'] ?? 0) + 1;
header('Content-Type: text/plain');
header('X-SJ-Node: ' . sj_node());
echo "node=" . sj_node() . "\n";
echo "count=" . $_SESSION['count'] . "\n";
echo "session=" . session_id() . "\n";
