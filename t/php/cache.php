<?php
// A page whose caching headers the test chooses, and which counts the
// requests that reached it, so a test can tell a hit from a miss:
//   cache.php?id=NAME&cc=max-age%3D60&vary=Accept-Language&cookie=1
//            &etag=1&lm=1&status=200&sleep_ms=0&size=N&expires=SECS
// The body is "id=NAME count=N\n" (padded to `size` bytes if given); the
// count is also in X-Count. Query parameters other than these are ignored
// (and part of the URL, so they make distinct cache keys).
require __DIR__ . '/common.inc';

$id = preg_replace('/[^A-Za-z0-9_-]/', '_', $_GET['id'] ?? 'default');
$file = sj_state_dir() . "/cache-count-$id";
$fh = fopen($file, 'c+');
flock($fh, LOCK_EX);
$n = (int) stream_get_contents($fh) + 1;
ftruncate($fh, 0);
rewind($fh);
fwrite($fh, (string) $n);
flock($fh, LOCK_UN);
fclose($fh);

if (isset($_GET['sleep_ms'])) {
    usleep(1000 * (int) $_GET['sleep_ms']);
}
if (isset($_GET['status'])) {
    http_response_code((int) $_GET['status']);
}
if (isset($_GET['cc'])) {
    header('Cache-Control: ' . $_GET['cc']);
}
if (isset($_GET['expires'])) {
    header('Expires: ' . gmdate('D, d M Y H:i:s', time() + (int) $_GET['expires']) . ' GMT');
}
if (isset($_GET['vary'])) {
    header('Vary: ' . $_GET['vary']);
}
if (!empty($_GET['cookie'])) {
    header('Set-Cookie: session=' . $id . $n . '; path=/');
}
if (!empty($_GET['etag'])) {
    header('ETag: "' . $id . '-v' . ($_GET['etag']) . '"');
}
if (!empty($_GET['lm'])) {
    header('Last-Modified: ' . gmdate('D, d M Y H:i:s', time() - 3600) . ' GMT');
}
// Conditional requests against our own validators.
if (!empty($_GET['etag'])) {
    $tag = '"' . $id . '-v' . $_GET['etag'] . '"';
    if (($_SERVER['HTTP_IF_NONE_MATCH'] ?? '') === $tag) {
        http_response_code(304);
        exit;
    }
}
header('Content-Type: text/plain');
header('X-Count: ' . $n);
header('X-Seen-XFF: ' . ($_SERVER['HTTP_X_FORWARDED_FOR'] ?? '-'));
header('X-Seen-Proto: ' . ($_SERVER['HTTP_X_FORWARDED_PROTO'] ?? '-'));
header('X-Seen-Method: ' . $_SERVER['REQUEST_METHOD']);
$lang = $_SERVER['HTTP_ACCEPT_LANGUAGE'] ?? '-';
$auth = isset($_SERVER['HTTP_AUTHORIZATION']) || isset($_SERVER['PHP_AUTH_USER']) ? 'yes' : 'no';
$body = "id=$id count=$n lang=$lang auth=$auth\n";
if (isset($_GET['size'])) {
    $size = (int) $_GET['size'];
    $body = str_pad($body, $size, '.');
}
echo $body;
