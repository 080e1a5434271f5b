package safedir

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// canary is a file outside the directory under attack whose content, mode and owner must
// never change.
type canary struct {
	path string
	st   os.FileInfo
}

func newCanary(t *testing.T) *canary {
	t.Helper()
	p := filepath.Join(t.TempDir(), "canary")
	if err := os.WriteFile(p, []byte("root's secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return &canary{path: p, st: st}
}

func (c *canary) check(t *testing.T, what string) {
	t.Helper()
	b, err := os.ReadFile(c.path)
	st, err2 := os.Stat(c.path)
	if err != nil || err2 != nil {
		t.Fatalf("%s: the canary is gone: %v %v", what, err, err2)
	}
	if string(b) != "root's secret" || st.Mode() != c.st.Mode() ||
		st.Sys().(*syscall.Stat_t).Uid != c.st.Sys().(*syscall.Stat_t).Uid {
		t.Errorf("%s: the canary changed: %q %v uid %d", what, b, st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
	}
}

func open(t *testing.T, p string) *Dir {
	t.Helper()
	d, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestLinksAreNeverFollowed(t *testing.T) {
	c := newCanary(t)
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	link := func(name, target string) {
		t.Helper()
		p := filepath.Join(root, name)
		_ = os.RemoveAll(p)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	d := open(t, root)
	other := Owner{UID: 4242, GID: 4242}
	if os.Geteuid() != 0 {
		other = Keep
	}

	// A file replaced by a link to the canary: writing replaces the link.
	link("data/conf", c.path)
	if err := d.WriteFile("data/conf", []byte("new"), 0o600, other); err != nil {
		t.Fatal(err)
	}
	c.check(t, "WriteFile over a link")
	if st, _, _ := d.Lstat("data/conf"); st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		t.Errorf("data/conf is not a regular file after WriteFile")
	}
	// The temporary name planted as a link.
	link("data/.conf.fog-tmp", c.path)
	if err := d.WriteFileSync("data/conf", []byte("newer"), 0o600, other); err != nil {
		t.Fatal(err)
	}
	c.check(t, "WriteFile with its temporary name planted")
	// A directory of the path replaced by a link to the canary's directory.
	link("sub", filepath.Dir(c.path))
	for what, err := range map[string]error{
		"WriteFile":  d.WriteFile("sub/canary", []byte("x"), 0o644, other),
		"Touch":      d.Touch("sub/canary", 0o644, other),
		"Append":     d.Append("sub/canary", []byte("x")),
		"Remove":     d.Remove("sub/canary"),
		"Mkdir":      d.Mkdir("sub/x", 0o755, other),
		"CopyFile":   d.CopyFile("sub/canary", d, "copied", 0o600),
		"ReadFile":   func() error { _, err := d.ReadFile("sub/canary", 0); return err }(),
		"OpenDir":    func() error { _, err := d.OpenDir("sub"); return err }(),
		"Tail":       func() error { _, err := d.Tail("sub/canary", 10); return err }(),
		"Touch link": func() error { link("log", c.path); return d.Touch("log", 0o644, other) }(),
		"Read link":  func() error { _, err := d.ReadFile("log", 0); return err }(),
	} {
		if !errors.Is(err, ErrLink) {
			t.Errorf("%s through a link = %v, want ErrLink", what, err)
		}
	}
	c.check(t, "every operation through a linked directory")
	if _, err := os.Stat(filepath.Join(root, "copied")); err == nil {
		t.Error("the canary was copied")
	}
	// Removing a link removes the link.
	if err := d.Remove("log"); err != nil {
		t.Fatal(err)
	}
	c.check(t, "Remove of a link")
	// A tree with links in it changes owner, the links themselves and not their targets.
	link("data/escape", c.path)
	link("data/escapedir", filepath.Dir(c.path))
	if os.Geteuid() == 0 {
		data, err := d.OpenDir("data")
		if err != nil {
			t.Fatal(err)
		}
		if err := data.ChownTree(other); err != nil {
			t.Fatal(err)
		}
		data.Close()
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(root, "data/escape"), &st); err != nil || st.Uid != 4242 {
			t.Errorf("the link itself was not given away: uid %d %v", st.Uid, err)
		}
	}
	c.check(t, "ChownTree")
}

func TestFIFOsAndOddNames(t *testing.T) {
	root := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(root, "log"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := open(t, root)
	start := time.Now()
	for what, err := range map[string]error{
		"ReadFile": func() error { _, err := d.ReadFile("log", 0); return err }(),
		"Tail":     func() error { _, err := d.Tail("log", 10); return err }(),
		"Touch":    d.Touch("log", 0o600, Keep),
	} {
		if !errors.Is(err, ErrNotRegular) {
			t.Errorf("%s of a FIFO = %v, want ErrNotRegular", what, err)
		}
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("a FIFO held the reads for %s", time.Since(start))
	}
	if d.IsRegular("log") {
		t.Error("a FIFO is a regular file")
	}
	for _, name := range []string{"", "/etc/passwd", "../x", "a/../../x", "."} {
		if _, err := d.ReadFile(name, 0); !errors.Is(err, ErrBadName) {
			t.Errorf("ReadFile(%q) = %v, want ErrBadName", name, err)
		}
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(root, "linkdir")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(root, "linkdir")); !errors.Is(err, ErrLink) {
		t.Errorf("Open of a link = %v, want ErrLink", err)
	}
}

func TestWriteReadTail(t *testing.T) {
	d := open(t, t.TempDir())
	if err := d.Mkdir("a", 0o700, Keep); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFile("a/f", []byte("0123456789"), 0o640, Keep); err != nil {
		t.Fatal(err)
	}
	if err := d.Append("a/f", []byte("ab")); err != nil {
		t.Fatal(err)
	}
	if b, err := d.ReadFile("a/f", 0); err != nil || string(b) != "0123456789ab" {
		t.Errorf("ReadFile = %q %v", b, err)
	}
	if b, err := d.ReadFile("a/f", 4); err != nil || string(b) != "0123" {
		t.Errorf("ReadFile max 4 = %q %v", b, err)
	}
	if b, err := d.Tail("a/f", 3); err != nil || string(b) != "9ab" {
		t.Errorf("Tail 3 = %q %v", b, err)
	}
	if st, ok, err := d.Lstat("a/f"); err != nil || !ok || st.Mode&0o777 != 0o640 {
		t.Errorf("Lstat = %o %v %v", st.Mode, ok, err)
	}
	if _, ok, err := d.Lstat("a/missing"); ok || err != nil {
		t.Errorf("Lstat of a missing file = %v %v", ok, err)
	}
	if err := d.Remove("a/missing"); err != nil {
		t.Errorf("Remove of a missing file = %v", err)
	}
}

// TestRename renames a name within its directory, a link as itself, and refuses a path, a
// climb and a name that exists.
func TestRename(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "stanza"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "taken"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Rename("stanza", "stanza.aside"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(filepath.Join(dir, "stanza.aside")); err != nil || !st.IsDir() {
		t.Errorf("after the rename: %v %v", st, err)
	}
	if err := d.Rename("link", "link2"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(filepath.Join(dir, "link2")); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("a link renamed is no longer a link: %v %v", st, err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the link's target moved: %v", err)
	}
	for _, c := range [][2]string{{"stanza.aside", "../x"}, {"stanza.aside", "a/b"}, {"..", "x"}, {"", "x"}} {
		if err := d.Rename(c[0], c[1]); !errors.Is(err, ErrBadName) {
			t.Errorf("Rename(%q, %q) = %v, want ErrBadName", c[0], c[1], err)
		}
	}
	if err := d.Rename("stanza.aside", "taken"); !errors.Is(err, os.ErrExist) {
		t.Errorf("a rename onto an existing name = %v, want it refused", err)
	}
}
