// Real-client driver (tests/clients/steps.txt) for Go's gomemcache
// (github.com/bradfitz/gomemcache, the version Debian packages):
//
//	driver HOST:PORT
//
// Prints "client<TAB><name>", then "<step><TAB><result>" per step. The suite
// builds it offline against Debian's copy of the library (GOPATH mode,
// /usr/share/gocode); see tests/integration/test_real_clients.py.
//
// This gomemcache has no append, prepend or version call: those steps print
// "n/a". Errors print as the library names them, so a difference in the
// server's answer shows as a different error.
package main

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// blob is n bytes of md5 hex digits of 0, 1, 2, ... (as the other drivers).
func blob(n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		sum := md5.Sum([]byte(strconv.Itoa(i)))
		out = append(out, hex.EncodeToString(sum[:])...)
	}
	return out[:n]
}

// version is the Debian package's, set by the build (-X main.version=...).
var version = "?"

var (
	printable = regexp.MustCompile(`^[ -~]*$`)
	address   = regexp.MustCompile(`\S*127\.0\.0\.1:\d+\S*`)
)

// res shows the outcome of a call that returns only an error.
func res(err error) string {
	if err == nil {
		return "ok"
	}
	// The two runs reach different addresses: name neither.
	text := address.ReplaceAllString(err.Error(), "<server>")
	return "error: " + strings.Join(strings.Fields(text), " ")
}

// value shows what a get returned against what was stored.
func value(it *memcache.Item, err error, expected []byte) string {
	if err == memcache.ErrCacheMiss {
		return "miss"
	}
	if err != nil {
		return res(err)
	}
	same := string(it.Value) == string(expected)
	if same && len(it.Value) <= 24 && printable.Match(it.Value) {
		return strconv.Quote(string(it.Value))
	}
	state := "differs"
	if same {
		state = "intact"
	}
	return fmt.Sprintf("<%d bytes, %s>", len(it.Value), state)
}

func number(n uint64, err error) string {
	if err != nil {
		return res(err)
	}
	return strconv.FormatUint(n, 10)
}

type driver struct {
	c     *memcache.Client
	token *memcache.Item // the item gets returned: it carries the cas id
}

func (d *driver) get(key string, expected []byte) string {
	it, err := d.c.Get(key)
	return value(it, err, expected)
}

func (d *driver) setGet(key string, v []byte) string {
	return res(d.c.Set(&memcache.Item{Key: key, Value: v})) + " / " + d.get(key, v)
}

// casWith sends a cas with the token gets returned, for key and value.
func (d *driver) casWith(key, v string) string {
	if d.token == nil {
		return "no token"
	}
	it := *d.token
	it.Key, it.Value = key, []byte(v)
	return res(d.c.CompareAndSwap(&it))
}

func (d *driver) multiGet() string {
	var keys []string
	want := map[string]string{}
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("mk:%d", i)
		want[k] = strings.Repeat(fmt.Sprintf("value %d", i), i+1)
		if err := d.c.Set(&memcache.Item{Key: k, Value: []byte(want[k])}); err != nil {
			return res(err)
		}
		keys = append(keys, k)
	}
	for i := 0; i < 5; i++ {
		keys = append(keys, fmt.Sprintf("mk:none:%d", i))
	}
	got, err := d.c.GetMulti(keys)
	if err != nil {
		return res(err)
	}
	right := 0
	for k, it := range got {
		if w, ok := want[k]; ok && w == string(it.Value) {
			right++
		}
	}
	return fmt.Sprintf("%d hits, %d right", len(got), right)
}

func (d *driver) expiry() string {
	stored := res(d.c.Set(&memcache.Item{Key: "k:ttl", Value: []byte("brief"), Expiration: 3}))
	first := d.get("k:ttl", []byte("brief"))
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.c.Get("k:ttl"); err == memcache.ErrCacheMiss {
			return stored + " / " + first + ", then miss"
		}
		time.Sleep(100 * time.Millisecond)
	}
	return stored + " / " + first + ", still there after 8 s"
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: driver HOST:PORT")
		os.Exit(2)
	}
	d := &driver{c: memcache.New(os.Args[1])}
	// The library's default (100 ms) is shorter than a megabyte takes on a
	// loaded machine; the suite's own hang detector bounds the run.
	d.c.Timeout = 10 * time.Second
	fmt.Printf("client\tgomemcache %s\n", version)

	var bin []byte
	for i := 0; i < 256; i++ {
		bin = append(bin, byte(i))
	}
	bin = append(bin, "\r\n\r\nEND\r\n"...)
	for i := 255; i >= 0; i-- {
		bin = append(bin, byte(i))
	}
	key250 := strings.Repeat("k", 246) + ":250"
	na := func() string { return "n/a" }

	steps := []struct {
		name string
		run  func() string
	}{
		{"set", func() string { return res(d.c.Set(&memcache.Item{Key: "k:set", Value: []byte("hello")})) }},
		{"get", func() string { return d.get("k:set", []byte("hello")) }},
		{"get missing", func() string { return d.get("k:none", nil) }},
		{"add new", func() string { return res(d.c.Add(&memcache.Item{Key: "k:add", Value: []byte("a1")})) }},
		{"add existing", func() string { return res(d.c.Add(&memcache.Item{Key: "k:add", Value: []byte("a2")})) }},
		{"get after add", func() string { return d.get("k:add", []byte("a1")) }},
		{"replace", func() string { return res(d.c.Replace(&memcache.Item{Key: "k:add", Value: []byte("r1")})) }},
		{"replace missing", func() string { return res(d.c.Replace(&memcache.Item{Key: "k:none", Value: []byte("x")})) }},
		{"append", na},
		{"prepend", na},
		{"get after append", func() string { return d.get("k:set", []byte("hello")) }},
		{"append missing", na},
		{"gets", func() string {
			it, err := d.c.Get("k:set")
			if err != nil {
				return value(it, err, nil)
			}
			d.token = it
			return value(it, nil, []byte("hello")) + ", token"
		}},
		{"cas", func() string { return d.casWith("k:set", "swapped") }},
		{"cas stale", func() string { return d.casWith("k:set", "late") }},
		{"cas missing", func() string { return d.casWith("k:none", "x") }},
		{"get after cas", func() string { return d.get("k:set", []byte("swapped")) }},
		{"delete", func() string { return res(d.c.Delete("k:set")) }},
		{"delete missing", func() string { return res(d.c.Delete("k:set")) }},
		{"incr", func() string {
			d.c.Set(&memcache.Item{Key: "k:n", Value: []byte("10")})
			return number(d.c.Increment("k:n", 5))
		}},
		{"decr below zero", func() string { return number(d.c.Decrement("k:n", 100)) }},
		{"incr missing", func() string { return number(d.c.Increment("k:none", 1)) }},
		{"incr non-numeric", func() string { return number(d.c.Increment("k:add", 1)) }},
		{"touch", func() string { return res(d.c.Touch("k:add", 100)) }},
		{"touch missing", func() string { return res(d.c.Touch("k:none", 100)) }},
		{"multi-get 50 keys", d.multiGet},
		{"value 0 B", func() string { return d.setGet("k:empty", []byte{}) }},
		{"binary value", func() string { return d.setGet("k:binary", bin) }},
		{"value 500 KB", func() string { return d.setGet("k:big", blob(512000)) }},
		{"value 1,000,000 B", func() string { return d.setGet("k:big", blob(1000000)) }},
		{"value 1 MiB + 1", func() string { return res(d.c.Set(&memcache.Item{Key: "k:big", Value: blob(1048577)})) }},
		{"get after too big", func() string { return d.get("k:big", blob(1000000)) }},
		{"key 250 bytes", func() string { return d.setGet(key250, []byte("long key")) }},
		{"expiry", d.expiry},
		{"flush_all", func() string { return res(d.c.DeleteAll()) }},
		{"get after flush", func() string { return d.get("k:add", nil) }},
		{"version", na},
	}
	for _, s := range steps {
		fmt.Printf("%s\t%s\n", s.name, s.run())
	}
}
