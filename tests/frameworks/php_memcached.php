<?php
// php-memcached with the binary protocol, and its session handler with locking, against one
// memcache server. Usage: php php_memcached.php HOST PORT [USER PASSWORD]
function check($condition, $what) {
    if (!$condition) {
        fwrite(STDERR, "check failed: $what\n");
        exit(1);
    }
}

[$host, $port] = [$argv[1], (int)$argv[2]];
$user = $argv[3] ?? null;
$password = $argv[4] ?? null;

$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$m->setOption(Memcached::OPT_COMPRESSION, false);
$m->setOption(Memcached::OPT_PREFIX_KEY, 'php-' . bin2hex(random_bytes(6)) . '-');
$m->addServer($host, $port);
if ($user !== null) {
    $m->setSaslAuthData($user, $password);
}

check($m->set('k', 'v'), 'set: ' . $m->getResultMessage());
check($m->get('k') === 'v', 'get');
check($m->get('missing') === false && $m->getResultCode() === Memcached::RES_NOTFOUND, 'miss');
check($m->set('arr', ['a' => 1]), 'set array');
check($m->get('arr') === ['a' => 1], 'serialized value');
check($m->getMulti(['k', 'arr', 'missing']) === ['k' => 'v', 'arr' => ['a' => 1]], 'getMulti');

check($m->add('a', '1'), 'add');
check(!$m->add('a', '2') && $m->getResultCode() === Memcached::RES_DATA_EXISTS, 'add of a present key (binary: "exists")');
check($m->replace('a', '3'), 'replace');
check(!$m->replace('not-there', 'x'), 'replace of a missing key');
check($m->append('a', '4'), 'append');
check($m->prepend('a', '2'), 'prepend');
check($m->get('a') === '234', 'append/prepend');

check($m->increment('n', 1, 10, 60) === 10, 'increment creates with the initial value');
check($m->increment('n', 5) === 15, 'increment');
check($m->decrement('n', 100) === 0, 'decrement floors at 0');
check($m->increment('no-counter') === false, 'increment of a missing key without initial value');

$m->set('c', 'old');
$got = $m->get('c', null, Memcached::GET_EXTENDED);
check($got['value'] === 'old' && $got['cas'] > 0, 'get with cas');
check($m->cas($got['cas'], 'c', 'new'), 'cas');
check(!$m->cas($got['cas'], 'c', 'newer') && $m->getResultCode() === Memcached::RES_DATA_EXISTS, 'stale cas');
check($m->touch('c', 60), 'touch');
check($m->delete('c'), 'delete');
check(!$m->delete('c') && $m->getResultCode() === Memcached::RES_NOTFOUND, 'delete of a missing key');
check(is_array($m->getStats()), 'stats');

// Sessions: memcached handler with locking (lock.<id> taken with add, released with delete).
ini_set('session.save_handler', 'memcached');
ini_set('session.save_path', "$host:$port");
ini_set('session.use_cookies', '0');
ini_set('session.use_strict_mode', '0');
ini_set('memcached.sess_locking', '1');
ini_set('memcached.sess_binary_protocol', '1');
ini_set('memcached.sess_prefix', 'php.sess.');
if ($user !== null) {
    ini_set('memcached.sess_sasl_username', $user);
    ini_set('memcached.sess_sasl_password', $password);
}
$id = 'kaitest' . bin2hex(random_bytes(8));
session_id($id);
check(session_start(), 'session_start');
$raw = new Memcached();
$raw->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
$raw->addServer($host, $port);
if ($user !== null) {
    $raw->setSaslAuthData($user, $password);
}
check($raw->get("php.sess.lock.$id") !== false, 'the session lock is held while the session is open');
$_SESSION['count'] = 1;
session_write_close();
check($raw->get("php.sess.lock.$id") === false, 'the lock is released on close');
session_id($id);
check(session_start(), 'session_start again');
check(($_SESSION['count'] ?? null) === 1, 'session data read back');
$_SESSION['count'] += 1;
session_write_close();
session_id($id);
session_start();
check($_SESSION['count'] === 2, 'session data updated');
session_destroy();

echo "php-memcached ok\n";
