<?php
// The health check target: 200 "ok", never cached.
header('Content-Type: text/plain');
header('Cache-Control: no-store');
echo "ok\n";
