<?php
// What both PHP drivers (driver.php for the memcached extension,
// driver_memcache.php for the older memcache extension) share: the step data
// and the way results are shown, so that their tables read alike.

// n bytes of md5 hex digits of 0, 1, 2, ... (as the other drivers).
function blob($n) {
    $out = '';
    for ($i = 0; strlen($out) < $n; $i++)
        $out .= md5((string)$i);
    return substr($out, 0, $n);
}

function show($v) {
    if ($v === null) return 'null';
    if ($v === true) return 'true';
    if ($v === false) return 'false';
    if (is_int($v)) return (string)$v;
    return '"' . $v . '"';
}

// A value as stored, or how long it is and whether it came back intact.
function shown_value($v, $expected) {
    if ($v === $expected && strlen($v) <= 24 && preg_match('/^[ -~]*$/', $v))
        return '"' . $v . '"';
    return sprintf('<%d bytes, %s>', strlen($v), $v === $expected ? 'intact' : 'differs');
}

$binary = implode('', array_map('chr', range(0, 255))) . "\r\n" . "\r\nEND\r\n" .
          implode('', array_map('chr', range(255, 0)));
$key250 = str_repeat('k', 246) . ':250';
$multi = [];
for ($i = 0; $i < 50; $i++)
    $multi["mk:$i"] = str_repeat("value $i", $i + 1);

// The multi-get step's keys: the 50 stored and 5 never stored.
function multi_asked($multi) {
    $asked = array_keys($multi);
    for ($i = 0; $i < 5; $i++) $asked[] = "mk:none:$i";
    return $asked;
}

// What a multi-get returned: how many keys, how many with the value stored.
function multi_result($got, $multi) {
    $right = 0;
    foreach ($got as $k => $v)
        if (isset($multi[$k]) && $multi[$k] === $v) $right++;
    return sprintf('%d hits, %d right', count($got), $right);
}
